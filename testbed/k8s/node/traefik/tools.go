//go:build tools

// Package tools pins the Traefik that testbed/node.sh builds (`ingress` subcommand). Traefik's own
// go.mod has replace and exclude lines, which `go install module@version` refuses, so this
// wrapper carries them over (generated as in testbed/k8s/gen-kubernetes-gomod.sh, by hand).
package tools

import _ "github.com/traefik/traefik/v3/cmd/traefik"
