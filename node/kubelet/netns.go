package kubelet

import "synod/node/network"

func defaultNetNS() NetNS {
	return NetNS{Create: network.NewNetNS, Delete: network.DeleteNetNS, Path: network.NetNSPath}
}
