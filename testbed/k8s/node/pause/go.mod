module rmodelpack.dev/testbed/k8s/node/pause

go 1.22
