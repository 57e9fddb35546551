package nodeipam

import (
	"errors"
	"fmt"
	"math/big"
	"net/netip"
	"sync"
)

// errFull: every CIDR of the range is in use.
var errFull = errors.New("nodeipam: CIDR range is full")

// maxSubnetBits bounds the number of node CIDRs (2^16), as Kubernetes does.
const maxSubnetBits = 16

// cidrSet hands out the node-sized subnets of a cluster range.
type cidrSet struct {
	base  netip.Prefix
	mask  int // node CIDR prefix length
	count int // number of node CIDRs in base

	// mu guards the allocation state below.
	mu     sync.Mutex
	owner  map[int]string // subnet index -> node
	byNode map[string]int
	next   int // where the next search starts (Kubernetes' nextCandidate)
}

func newCIDRSet(cluster string, mask int) (*cidrSet, error) {
	base, err := netip.ParsePrefix(cluster)
	if err != nil {
		return nil, fmt.Errorf("nodeipam: cluster CIDR %q: %w", cluster, err)
	}
	base = base.Masked()
	if mask < base.Bits() || mask > base.Addr().BitLen() {
		return nil, fmt.Errorf("nodeipam: node CIDR mask size %d does not fit cluster CIDR %s", mask, base)
	}
	if mask-base.Bits() > maxSubnetBits {
		return nil, fmt.Errorf("nodeipam: node CIDR mask size %d is too big for cluster CIDR %s (at most %d bits more)", mask, base, maxSubnetBits)
	}
	return &cidrSet{base: base, mask: mask, count: 1 << (mask - base.Bits()), owner: map[int]string{}, byNode: map[string]int{}}, nil
}

// prefix is the i-th node CIDR.
func (s *cidrSet) prefix(i int) netip.Prefix {
	shift := uint(s.base.Addr().BitLen() - s.mask)
	n := new(big.Int).SetBytes(s.base.Addr().AsSlice())
	n.Add(n, new(big.Int).Lsh(big.NewInt(int64(i)), shift))
	buf := make([]byte, s.base.Addr().BitLen()/8)
	n.FillBytes(buf)
	a, _ := netip.AddrFromSlice(buf)
	return netip.PrefixFrom(a, s.mask)
}

// index is p's position in the range, if p is one of its node CIDRs.
func (s *cidrSet) index(p netip.Prefix) (int, bool) {
	if p.Bits() != s.mask || !s.base.Contains(p.Addr()) || p.Addr().Is4() != s.base.Addr().Is4() {
		return 0, false
	}
	shift := uint(s.base.Addr().BitLen() - s.mask)
	n := new(big.Int).SetBytes(p.Masked().Addr().AsSlice())
	n.Sub(n, new(big.Int).SetBytes(s.base.Addr().AsSlice()))
	n.Rsh(n, shift)
	return int(n.Int64()), true
}

// allocate gives node a free CIDR (or the one it already holds).
func (s *cidrSet) allocate(node string) (netip.Prefix, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if i, ok := s.byNode[node]; ok {
		return s.prefix(i), nil
	}
	for k := range s.count {
		i := (s.next + k) % s.count
		if _, used := s.owner[i]; used {
			continue
		}
		s.owner[i], s.byNode[node] = node, i
		s.next = (i + 1) % s.count
		return s.prefix(i), nil
	}
	return netip.Prefix{}, errFull
}

// occupy records that node holds p. CIDRs outside the range are not ours
// to track; a CIDR another node holds is reported.
func (s *cidrSet) occupy(node string, p netip.Prefix) error {
	i, ok := s.index(p)
	if !ok {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if other, used := s.owner[i]; used && other != node {
		return fmt.Errorf("nodeipam: CIDR %s of node %s is already held by node %s", p, node, other)
	}
	if j, ok := s.byNode[node]; ok && j != i {
		// An allocation we made but never saw land loses to what the
		// node actually carries.
		delete(s.owner, j)
	}
	s.owner[i], s.byNode[node] = node, i
	return nil
}

// release frees whatever node holds.
func (s *cidrSet) release(node string) (netip.Prefix, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := s.byNode[node]
	if !ok {
		return netip.Prefix{}, false
	}
	delete(s.byNode, node)
	if s.owner[i] == node {
		delete(s.owner, i)
	}
	return s.prefix(i), true
}

// used counts the CIDRs held.
func (s *cidrSet) used() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.owner)
}
