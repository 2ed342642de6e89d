module rmodelpack.dev/ci/k8s/node/pause

go 1.22
