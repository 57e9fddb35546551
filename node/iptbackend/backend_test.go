package iptbackend

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParse(t *testing.T) {
	for in, want := range map[string]Backend{"": Auto, "auto": Auto, "nft": NFT, "legacy": Legacy} {
		if got, err := Parse(in); err != nil || got != want {
			t.Errorf("Parse(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := Parse("ipvs"); err == nil {
		t.Error("Parse(ipvs): no error")
	}
}

// TestDetect runs Detect in network namespaces the test makes: none of
// their tables has a rule (legacy), then a rule in nft (nft), then more
// rules in legacy than in nft (legacy).
func TestDetect(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("needs root (network namespaces)")
		}
		t.Skip("needs root")
	}
	for _, tool := range []string{"ip", "iptables-nft", "iptables-legacy"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s: %v (apt packages iptables, iproute2)", tool, err)
			}
			t.Skip(tool, err)
		}
	}
	name := fmt.Sprintf("synodipt%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "delete", name).Run() })
	in := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", append([]string{"netns", "exec", name}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v %s", args, err, out)
		}
	}
	detect := func() Backend {
		t.Helper()
		var got Tools
		var why string
		err := inNetNS("/run/netns/"+name, func() (err error) {
			got, why, err = Detect(context.Background())
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("detected %s: %s", got.Backend, why)
		return got.Backend
	}
	if b := detect(); b != Legacy {
		t.Errorf("empty namespace: %s, want legacy", b)
	}
	in("iptables-nft", "-t", "nat", "-A", "POSTROUTING", "-s", "10.1.0.0/16", "-j", "MASQUERADE")
	if b := detect(); b != NFT {
		t.Errorf("one nft rule: %s, want nft", b)
	}
	in("iptables-legacy", "-A", "FORWARD", "-s", "10.1.0.0/16", "-j", "ACCEPT")
	in("iptables-legacy", "-A", "FORWARD", "-d", "10.1.0.0/16", "-j", "ACCEPT")
	if b := detect(); b != Legacy {
		t.Errorf("two legacy rules, one nft: %s, want legacy", b)
	}
}

// inNetNS runs fn (and the commands it starts) in the namespace at path,
// on a locked thread that exits afterwards rather than return to the pool
// in the wrong namespace.
func inNetNS(path string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		f, err := os.Open(path)
		if err != nil {
			errc <- err
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		errc <- fn()
	}()
	return <-errc
}
