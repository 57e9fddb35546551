package chaos

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// The harness's machine-wide names. They differ from `synod up`'s
// (synodup0, 10.99.0.0/24, synodup-w*) so that both can run at once; two
// chaos runs cannot, which LockFile enforces.
const (
	Bridge      = "synodch0"
	BridgeIP    = "10.97.0.1"
	subnetBits  = "/24"
	netnsPrefix = "synodch-"
	vethPrefix  = "synch"
	// LockFile is flocked for the whole run.
	LockFile = "/run/lock/synod-chaos.lock"
	// partitionChain holds a namespace's partition rules; INPUT and OUTPUT
	// jump to it, so healing is one flush.
	partitionChain = "SYNODCHAOS"
)

// masterIP is the bridge address of master index i (from 0): 10.97.0.11, ...
func masterIP(i int) string { return fmt.Sprintf("10.97.0.%d", 11+i) }

// netnsName is the network namespace of master index i.
func netnsName(i int) string { return fmt.Sprintf("%sm%d", netnsPrefix, i+1) }

// vethName is the host end of master index i's veth.
func vethName(i int) string { return fmt.Sprintf("%s%d", vethPrefix, i+1) }

// lockMachine takes LockFile, waiting (bounded by ctx) while another run
// holds it. The descriptor is close-on-exec, so the masters do not inherit
// the lock and a killed harness releases it at once.
func lockMachine(ctx context.Context, onWait func()) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(LockFile), 0o755); err != nil {
		return nil, fmt.Errorf("chaos: lock dir: %w", err)
	}
	f, err := os.OpenFile(LockFile, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("chaos: lock: %w", err)
	}
	waited := false
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("chaos: lock %s: %w", LockFile, err)
		}
		if !waited && onWait != nil {
			onWait()
		}
		waited = true
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("chaos: another chaos run holds %s: %w", LockFile, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// cmdRun runs a command and returns its combined output in the error.
func cmdRun(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Leftovers lists what a chaos run left on the machine: network namespaces,
// links and processes in those namespaces. Empty after a clean run.
func Leftovers() []string {
	var left []string
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), netnsPrefix) {
			left = append(left, "netns "+e.Name())
			for _, pid := range netnsPids(e.Name()) {
				left = append(left, fmt.Sprintf("process %d in %s", pid, e.Name()))
			}
		}
	}
	links, _ := os.ReadDir("/sys/class/net")
	for _, l := range links {
		if l.Name() == Bridge || strings.HasPrefix(l.Name(), vethPrefix) {
			left = append(left, "link "+l.Name())
		}
	}
	if _, err := os.Stat(workersStateFile); err == nil {
		left = append(left, "workers of "+workersStateFile)
	}
	return left
}

// cleanupMachine removes every namespace, link and process a chaos run may
// have left (one killed before its own cleanup ran). Only call it while
// holding LockFile: then nothing of the kind belongs to a live run.
func cleanupMachine() error {
	// Pods first: their containers run in namespaces of their own.
	errs := []error{cleanupWorkerDirs()}
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), netnsPrefix) {
			continue
		}
		if err := removeNetns(e.Name()); err != nil {
			errs = append(errs, err)
		}
	}
	// A deleted namespace takes its veths along, asynchronously: a link
	// listed here may be gone by the time it is deleted.
	links, _ := os.ReadDir("/sys/class/net")
	for _, l := range links {
		if l.Name() == Bridge || strings.HasPrefix(l.Name(), vethPrefix) {
			if err := cmdRun(context.Background(), "ip", "link", "delete", l.Name()); err != nil && linkExists(l.Name()) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

func linkExists(name string) bool {
	_, err := os.Stat("/sys/class/net/" + name)
	return err == nil
}

// netnsPids lists the processes in network namespace name.
func netnsPids(name string) []int {
	out, err := exec.Command("ip", "netns", "pids", name).Output()
	if err != nil {
		return nil
	}
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		var pid int
		if _, err := fmt.Sscan(f, &pid); err == nil && pid > 1 {
			pids = append(pids, pid)
		}
	}
	return pids
}

// removeNetns SIGKILLs every process in namespace name (SIGKILL also ends a
// SIGSTOPped one), waits for them to go and deletes the namespace.
func removeNetns(name string) error {
	for _, pid := range netnsPids(name) {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(netnsPids(name)) > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if pids := netnsPids(name); len(pids) > 0 {
		return fmt.Errorf("chaos: processes %v in %s survive SIGKILL", pids, name)
	}
	return cmdRun(context.Background(), "ip", "netns", "delete", name)
}

// setupBridge creates the host bridge with BridgeIP.
func setupBridge(ctx context.Context) error {
	for _, args := range [][]string{
		{"ip", "link", "add", Bridge, "type", "bridge"},
		{"ip", "addr", "add", BridgeIP + subnetBits, "dev", Bridge},
		{"ip", "link", "set", Bridge, "up"},
	} {
		if err := cmdRun(ctx, args...); err != nil {
			return fmt.Errorf("chaos: bridge: %w", err)
		}
	}
	return nil
}

// setupNetns makes master index i's namespace (see setupNamespace) with
// the empty partition chain hooked into INPUT and OUTPUT.
func setupNetns(ctx context.Context, i int) error {
	ns := netnsName(i)
	if err := setupNamespace(ctx, ns, vethName(i), masterIP(i)); err != nil {
		return fmt.Errorf("chaos: namespace of %s: %w", memberName(i), err)
	}
	for _, rule := range [][]string{
		{"-N", partitionChain},
		{"-I", "INPUT", "-j", partitionChain},
		{"-I", "OUTPUT", "-j", partitionChain},
	} {
		if err := iptablesIn(ctx, ns, rule...); err != nil {
			return fmt.Errorf("chaos: namespace of %s: %w", memberName(i), err)
		}
	}
	return nil
}

// setupNamespace makes network namespace ns: lo, eth0 with address ip (the
// other end, host, enslaved to the bridge) and a default route via the host.
func setupNamespace(ctx context.Context, ns, host, ip string) error {
	peer := host + "p"
	for _, args := range [][]string{
		{"ip", "netns", "add", ns},
		{"ip", "link", "add", host, "type", "veth", "peer", "name", peer},
		{"ip", "link", "set", host, "master", Bridge, "up"},
		{"ip", "link", "set", peer, "netns", ns},
		{"ip", "-n", ns, "link", "set", "lo", "up"},
		{"ip", "-n", ns, "link", "set", peer, "name", "eth0"},
		{"ip", "-n", ns, "addr", "add", ip + subnetBits, "dev", "eth0"},
		{"ip", "-n", ns, "link", "set", "eth0", "up"},
		{"ip", "-n", ns, "route", "add", "default", "via", BridgeIP},
	} {
		if err := cmdRun(ctx, args...); err != nil {
			return err
		}
	}
	return nil
}

// iptablesIn runs iptables inside namespace ns. nsenter, not `ip netns
// exec`, which would also make a mount namespace for nothing.
func iptablesIn(ctx context.Context, ns string, args ...string) error {
	return cmdRun(ctx, append([]string{"nsenter", "--net=/run/netns/" + ns, "iptables", "-w", "5"}, args...)...)
}

// dropPeers makes namespace ns drop every packet to and from ips, in one
// iptables-restore so that the cut is (nearly) instant. Only masters'
// addresses are dropped: the host (clients, the harness) still reaches the
// member, so a member that answers from stale state is seen doing so.
func dropPeers(ctx context.Context, ns string, ips []string) error {
	var b strings.Builder
	b.WriteString("*filter\n")
	for _, ip := range ips {
		fmt.Fprintf(&b, "-A %s -s %s -j DROP\n-A %s -d %s -j DROP\n", partitionChain, ip, partitionChain, ip)
	}
	b.WriteString("COMMIT\n")
	cmd := exec.CommandContext(ctx, "nsenter", "--net=/run/netns/"+ns, "iptables-restore", "-w", "5", "--noflush")
	cmd.Stdin = strings.NewReader(b.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("iptables-restore in %s: %v: %s", ns, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// healNetns removes namespace ns's partition rules.
func healNetns(ctx context.Context, ns string) error {
	return iptablesIn(ctx, ns, "-F", partitionChain)
}
