// Command eddy-controlplane runs one part of a local Kubernetes control plane
// for Eddy's tests: `eddy-controlplane kube-apiserver FLAGS...` or
// `eddy-controlplane kube-controller-manager FLAGS...`. Both parts are the
// upstream commands, unchanged; they share one binary so the large common
// part of Kubernetes is compiled and linked once.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"k8s.io/component-base/cli"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: eddy-controlplane kube-apiserver|kube-controller-manager [flags]")
		os.Exit(2)
	}
	var command *cobra.Command
	switch os.Args[1] {
	case "kube-apiserver":
		command = apiserver.NewAPIServerCommand()
	case "kube-controller-manager":
		command = controllermanager.NewControllerManagerCommand()
	default:
		fmt.Fprintf(os.Stderr, "unknown part %q: want kube-apiserver or kube-controller-manager\n", os.Args[1])
		os.Exit(2)
	}
	command.SetArgs(os.Args[2:])
	os.Exit(cli.Run(command))
}
