// kube-controller-manager for Warden's test world, from the same pinned release as the API
// server: the controllers a real cluster runs behind it (ClusterRole aggregation for view/edit/
// admin, legacy token Secrets, namespace deletion, garbage collection).
package main

import (
	"os"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

func main() {
	command := app.NewControllerManagerCommand()
	code := cli.Run(command)
	os.Exit(code)
}
