// etcd for Warden's test world: the upstream server, built from etcd's official Go modules at
// the release pinned in go.mod (the one the pinned Kubernetes release is tested with).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
