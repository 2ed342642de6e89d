// Command pause is the pod sandbox ("pause") image of the offline node (testbed/node.sh): it holds
// the pod's namespaces and does nothing until SIGTERM or SIGINT. Built with CGO_ENABLED=0 and
// shipped FROM scratch, since no registry serves registry.k8s.io/pause here.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
}
