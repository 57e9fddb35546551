package endpoint

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"hash"
	"sort"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"synod/components/controllers/endpoint/endpointutil"
)

// RepackSubsets expands subsets to one (address, port) pair each and packs
// them back into Kubernetes' canonical layout: one subset per distinct set
// of addresses, holding every port those addresses serve, sorted. Equal
// endpoints therefore compare equal, so an unchanged service is not
// rewritten. An address not ready on any port is not ready on all of them.
// It is k8s.io/kubernetes/pkg/api/v1/endpoints.RepackSubsets.
func RepackSubsets(subsets []v1.EndpointSubset) []v1.EndpointSubset {
	allAddrs := map[addressKey]*v1.EndpointAddress{}
	portToAddrReady := map[v1.EndpointPort]addressSet{}
	for i := range subsets {
		if len(subsets[i].Ports) == 0 {
			// Keep port-less endpoints (a headless service without
			// ports) under a sentinel port.
			mapAddressesByPort(&subsets[i], v1.EndpointPort{Port: -1}, allAddrs, portToAddrReady)
			continue
		}
		for _, port := range subsets[i].Ports {
			mapAddressesByPort(&subsets[i], port, allAddrs, portToAddrReady)
		}
	}
	// Group ports by the exact set of addresses (and readiness) behind
	// them; maps cannot key on sets, so a hash of the set stands in.
	keyToAddrs := map[string]addressSet{}
	keyToPorts := map[string][]v1.EndpointPort{}
	for port, addrs := range portToAddrReady {
		key := hashAddresses(addrs)
		keyToAddrs[key] = addrs
		if port.Port > 0 {
			keyToPorts[key] = append(keyToPorts[key], port)
		} else if _, ok := keyToPorts[key]; !ok {
			keyToPorts[key] = nil
		}
	}
	final := []v1.EndpointSubset{}
	for key, ports := range keyToPorts {
		var ready, notReady []v1.EndpointAddress
		for addr, isReady := range keyToAddrs[key] {
			if isReady {
				ready = append(ready, *addr)
			} else {
				notReady = append(notReady, *addr)
			}
		}
		final = append(final, v1.EndpointSubset{Addresses: ready, NotReadyAddresses: notReady, Ports: ports})
	}
	return SortSubsets(final)
}

// addressKey de-duplicates addresses by IP and target UID.
type addressKey struct {
	ip  string
	uid types.UID
}

type addressSet map[*v1.EndpointAddress]bool

func mapAddressesByPort(subset *v1.EndpointSubset, port v1.EndpointPort, allAddrs map[addressKey]*v1.EndpointAddress, portToAddrReady map[v1.EndpointPort]addressSet) {
	for k := range subset.Addresses {
		mapAddressByPort(&subset.Addresses[k], port, true, allAddrs, portToAddrReady)
	}
	for k := range subset.NotReadyAddresses {
		mapAddressByPort(&subset.NotReadyAddresses[k], port, false, allAddrs, portToAddrReady)
	}
}

func mapAddressByPort(addr *v1.EndpointAddress, port v1.EndpointPort, ready bool, allAddrs map[addressKey]*v1.EndpointAddress, portToAddrReady map[v1.EndpointPort]addressSet) {
	key := addressKey{ip: addr.IP}
	if addr.TargetRef != nil {
		key.uid = addr.TargetRef.UID
	}
	existing := allAddrs[key]
	if existing == nil {
		cp := *addr
		existing = &cp
		allAddrs[key] = existing
	}
	if portToAddrReady[port] == nil {
		portToAddrReady[port] = addressSet{}
	}
	// Not ready wins over ready.
	if wasReady, found := portToAddrReady[port][existing]; !found || wasReady {
		portToAddrReady[port][existing] = ready
	}
}

type addrReady struct {
	addr  *v1.EndpointAddress
	ready bool
}

func hashAddresses(addrs addressSet) string {
	list := make([]addrReady, 0, len(addrs))
	for a, ready := range addrs {
		list = append(list, addrReady{a, ready})
	}
	sort.Slice(list, func(i, j int) bool { return LessEndpointAddress(list[i].addr, list[j].addr) })
	h := md5.New()
	endpointutil.DeepHashObject(h, list)
	return hex.EncodeToString(h.Sum(nil))
}

// LessEndpointAddress orders addresses by IP, then target UID.
func LessEndpointAddress(a, b *v1.EndpointAddress) bool {
	if c := bytes.Compare([]byte(a.IP), []byte(b.IP)); c != 0 {
		return c < 0
	}
	if b.TargetRef == nil {
		return false
	}
	if a.TargetRef == nil {
		return true
	}
	return a.TargetRef.UID < b.TargetRef.UID
}

// SortSubsets sorts addresses, ports and subsets in place, as Kubernetes
// does (ports and subsets by the hash of their contents), and returns them.
func SortSubsets(subsets []v1.EndpointSubset) []v1.EndpointSubset {
	h := md5.New()
	for i := range subsets {
		ss := &subsets[i]
		sort.Slice(ss.Addresses, func(a, b int) bool { return LessEndpointAddress(&ss.Addresses[a], &ss.Addresses[b]) })
		sort.Slice(ss.NotReadyAddresses, func(a, b int) bool {
			return LessEndpointAddress(&ss.NotReadyAddresses[a], &ss.NotReadyAddresses[b])
		})
		sortByHash(h, len(ss.Ports), func(k int) any { return ss.Ports[k] }, func(a, b int) { ss.Ports[a], ss.Ports[b] = ss.Ports[b], ss.Ports[a] })
	}
	sortByHash(h, len(subsets), func(k int) any { return subsets[k] }, func(a, b int) { subsets[a], subsets[b] = subsets[b], subsets[a] })
	return subsets
}

// sortByHash sorts n elements by the md5 of their deep dump.
func sortByHash(h hash.Hash, n int, elem func(int) any, swap func(a, b int)) {
	keys := make([][]byte, n)
	for i := range keys {
		endpointutil.DeepHashObject(h, elem(i))
		keys[i] = h.Sum(nil)
	}
	sort.Sort(hashSorter{keys: keys, swap: swap})
}

type hashSorter struct {
	keys [][]byte
	swap func(a, b int)
}

func (s hashSorter) Len() int           { return len(s.keys) }
func (s hashSorter) Less(i, j int) bool { return bytes.Compare(s.keys[i], s.keys[j]) < 0 }
func (s hashSorter) Swap(i, j int) {
	s.keys[i], s.keys[j] = s.keys[j], s.keys[i]
	s.swap(i, j)
}
