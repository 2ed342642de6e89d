//go:build tools

// Package tools pins the kubelet and kube-proxy that testbed/node.sh builds. They have their own
// wrapper module because they need modules (containerd, cAdvisor, netlink, ...) the control-plane
// wrapper does not list; the k8s.io staging pins are the same as in testbed/k8s/kubernetes/go.mod.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
