// Command kubectl is the real kubectl CLI, built from k8s.io/kubectl at the testbed's
// Kubernetes version, for tests that run `kubectl headwind ...` (tests/integration/
// test_kubectl.py): kubectl finds the kubectl-headwind plugin on PATH like any release does.
// This is what cmd/kubectl/kubectl.go in kubernetes/kubernetes does; bump the version together
// with KUBECTL_VERSION in tests/testbed/build.py.
package main

import (
	"k8s.io/component-base/cli"
	"k8s.io/kubectl/pkg/cmd"
	"k8s.io/kubectl/pkg/cmd/util"
)

func main() {
	command := cmd.NewDefaultKubectlCommand()
	if err := cli.RunNoErrOutput(command); err != nil {
		util.CheckErr(err)
	}
}
