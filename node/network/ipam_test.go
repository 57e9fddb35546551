package network

import (
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
)

func mustCIDR(t *testing.T, s string) *net.IPNet {
	t.Helper()
	_, c, err := net.ParseCIDR(s)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestIPAMExhaustsReleasesAndGoesRoundRobin(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.DiscardHandler)
	a, err := newIPAM(dir, mustCIDR(t, "10.9.0.0/29"), log)
	if err != nil {
		t.Fatal(err)
	}
	// A /29 has .0 network, .1 gateway, .7 broadcast: .2-.6 for pods.
	want := []string{"10.9.0.2", "10.9.0.3", "10.9.0.4", "10.9.0.5", "10.9.0.6"}
	for i, w := range want {
		ip, fresh, err := a.allocate(string(rune('a' + i)))
		if err != nil || !fresh || ip.String() != w {
			t.Fatalf("allocate #%d = %s, %v, %v; want %s", i, ip, fresh, err, w)
		}
	}
	if _, _, err := a.allocate("f"); err == nil {
		t.Fatal("allocated a sixth IP from a /29")
	}
	// Same pod, same IP, not fresh.
	if ip, fresh, err := a.allocate("c"); err != nil || fresh || ip.String() != "10.9.0.4" {
		t.Fatalf("re-allocate c = %s, %v, %v", ip, fresh, err)
	}
	if err := a.release("b"); err != nil {
		t.Fatal(err)
	}
	if err := a.release("b"); err != nil {
		t.Fatalf("second release: %v", err)
	}
	if ip, _, err := a.allocate("f"); err != nil || ip.String() != "10.9.0.3" {
		t.Fatalf("allocate after release = %s, %v; want the freed 10.9.0.3", ip, err)
	}

	// Round robin: after releasing .2 and .5, the next pod gets .5 (after
	// the last handed out, .3), not the lowest free one.
	_ = a.release("a")
	_ = a.release("d")
	if ip, _, _ := a.allocate("g"); ip.String() != "10.9.0.5" {
		t.Fatalf("round robin gave %s; want 10.9.0.5", ip)
	}

	// Reload: same allocations, same position.
	b, err := newIPAM(dir, mustCIDR(t, "10.9.0.0/29"), log)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := b.snapshot(), a.snapshot(); len(got) != len(want) {
		t.Fatalf("reloaded %v; want %v", got, want)
	} else {
		for id, ip := range want {
			if !got[id].Equal(ip) {
				t.Fatalf("reloaded %s = %s; want %s", id, got[id], ip)
			}
		}
	}
	// .6 is still held by e, so the search wraps to .2.
	if ip, _, _ := b.allocate("h"); ip.String() != "10.9.0.2" {
		t.Fatalf("after reload got %s; want 10.9.0.2 (next free after the last, 10.9.0.5)", ip)
	}
}

func TestIPAMDropsAllocationsOutsideANewPodCIDR(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.DiscardHandler)
	a, err := newIPAM(dir, mustCIDR(t, "10.9.0.0/24"), log)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.allocate("x"); err != nil {
		t.Fatal(err)
	}
	b, err := newIPAM(dir, mustCIDR(t, "10.9.1.0/24"), log)
	if err != nil {
		t.Fatal(err)
	}
	if ip := b.lookup("x"); ip != nil {
		t.Fatalf("pod kept %s from the old podCIDR", ip)
	}
	if ip, _, err := b.allocate("x"); err != nil || !mustCIDR(t, "10.9.1.0/24").Contains(ip) {
		t.Fatalf("allocate in new podCIDR = %s, %v", ip, err)
	}
}

func TestIPAMMovesCorruptStateAside(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, ipamFile), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := newIPAM(dir, mustCIDR(t, "10.9.0.0/24"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("corrupt state: %v", err)
	}
	if len(a.snapshot()) != 0 {
		t.Fatalf("allocations from a corrupt file: %v", a.snapshot())
	}
	if b, err := os.ReadFile(filepath.Join(dir, ipamFile+".corrupt")); err != nil || string(b) != "{not json" {
		t.Fatalf("corrupt file not kept aside: %q, %v", b, err)
	}
	if _, _, err := a.allocate("x"); err != nil {
		t.Fatal(err)
	}
}
