//go:build tools

// Package tools pins the kubelet that ci/node.sh builds. It has its own wrapper module because
// the kubelet needs modules (containerd, cAdvisor, ...) the control-plane wrapper does not list;
// the k8s.io staging pins are the same as in ci/k8s/kubernetes/go.mod.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kubelet"
)
