// Command eddy-etcd is etcd for Eddy's local Kubernetes control plane: the
// upstream server's own main, built from the published go.etcd.io/etcd module.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
