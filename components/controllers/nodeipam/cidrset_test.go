package nodeipam

import (
	"fmt"
	"net/netip"
	"testing"
)

func TestCIDRSet(t *testing.T) {
	for _, tc := range []struct {
		cluster     string
		mask        int
		first, last string
	}{
		{"10.244.0.0/16", 24, "10.244.0.0/24", "10.244.255.0/24"},
		{"10.0.0.0/8", 20, "10.0.0.0/20", "10.255.240.0/20"},
		{"fd00:10::/48", 64, "fd00:10::/64", "fd00:10:0:ffff::/64"},
	} {
		s, err := newCIDRSet(tc.cluster, tc.mask)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.prefix(0).String(); got != tc.first {
			t.Errorf("%s/%d first = %s, want %s", tc.cluster, tc.mask, got, tc.first)
		}
		if got := s.prefix(s.count - 1).String(); got != tc.last {
			t.Errorf("%s/%d last = %s, want %s", tc.cluster, tc.mask, got, tc.last)
		}
		for _, i := range []int{0, 1, s.count / 3, s.count - 1} {
			if j, ok := s.index(s.prefix(i)); !ok || j != i {
				t.Errorf("index(prefix(%d)) = %d %v", i, j, ok)
			}
		}
	}
	for _, bad := range []struct {
		cluster string
		mask    int
	}{{"10.0.0.0/16", 8}, {"10.0.0.0/8", 26}, {"nonsense", 24}, {"10.0.0.0/24", 33}} {
		if _, err := newCIDRSet(bad.cluster, bad.mask); err == nil {
			t.Errorf("newCIDRSet(%s, %d) accepted", bad.cluster, bad.mask)
		}
	}
}

func TestCIDRSetAllocation(t *testing.T) {
	s, err := newCIDRSet("10.1.0.0/22", 24)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.occupy("a", netip.MustParsePrefix("10.1.1.0/24")); err != nil {
		t.Fatal(err)
	}
	if err := s.occupy("b", netip.MustParsePrefix("10.1.1.0/24")); err == nil {
		t.Fatal("one CIDR occupied by two nodes")
	}
	if err := s.occupy("x", netip.MustParsePrefix("192.168.0.0/24")); err != nil {
		t.Fatalf("a CIDR outside the range is not ours to refuse: %v", err)
	}
	seen := map[netip.Prefix]string{netip.MustParsePrefix("10.1.1.0/24"): "a"}
	for i := range 3 {
		node := fmt.Sprint("n", i)
		p, err := s.allocate(node)
		if err != nil {
			t.Fatal(err)
		}
		if other, dup := seen[p]; dup {
			t.Fatalf("%s given to %s and %s", p, other, node)
		}
		seen[p] = node
		if again, _ := s.allocate(node); again != p {
			t.Fatalf("second allocate for %s: %s, then %s", node, p, again)
		}
	}
	if _, err := s.allocate("late"); err != errFull {
		t.Fatalf("allocate on a full range: %v", err)
	}
	freed, ok := s.release("n1")
	if !ok {
		t.Fatal("release n1")
	}
	if p, err := s.allocate("late"); err != nil || p != freed {
		t.Fatalf("after release: %s %v, want %s", p, err, freed)
	}
}
