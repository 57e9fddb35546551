package network

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// requireKernel checks what the kernel tests need: root and the tools the
// package and the tests exec. In CI a missing piece fails the test.
func requireKernel(t *testing.T) {
	t.Helper()
	missing := ""
	if os.Geteuid() != 0 {
		missing = "root"
	}
	for _, tool := range []string{"ip", "iptables-legacy", "iptables-nft", "busybox"} {
		if missing == "" {
			if _, err := exec.LookPath(tool); err != nil {
				missing = tool + " (apt packages iproute2, iptables, busybox-static)"
			}
		}
	}
	if missing == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("kernel network test needs %s", missing)
	}
	t.Skipf("kernel network test needs %s", missing)
}

var nsSeq atomic.Int64

// testNS creates a network namespace with lo up, deleted when the test ends
// (the kernel then frees every link, route and iptables rule in it).
func testNS(t *testing.T, role string) (name, path string) {
	t.Helper()
	name = fmt.Sprintf("sntest%d-%s%d", os.Getpid(), role, nsSeq.Add(1))
	path, err := NewNetNS(name)
	if err != nil {
		t.Fatalf("NewNetNS: %v", err)
	}
	t.Cleanup(func() {
		if err := DeleteNetNS(name); err != nil {
			t.Errorf("DeleteNetNS(%s): %v", name, err)
		}
	})
	run(t, "ip", "-n", name, "link", "set", "lo", "up")
	return name, path
}

// run runs a command and fails the test on error.
func run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// inNS runs a command inside the named namespace.
func inNS(t *testing.T, ns string, args ...string) string {
	t.Helper()
	return run(t, append([]string{"ip", "netns", "exec", ns}, args...)...)
}

// link connects two namespaces with a veth pair named ifname on both
// sides, addressed aCIDR and bCIDR: the "LAN" between simulated workers.
func link(t *testing.T, a, b, ifname, aCIDR, bCIDR string) {
	t.Helper()
	tmp := fmt.Sprintf("snt%dx%d", os.Getpid()%100000, nsSeq.Add(1))
	run(t, "ip", "-n", a, "link", "add", ifname, "type", "veth", "peer", "name", tmp, "netns", b)
	run(t, "ip", "-n", b, "link", "set", tmp, "name", ifname)
	run(t, "ip", "-n", a, "addr", "add", aCIDR, "dev", ifname)
	run(t, "ip", "-n", b, "addr", "add", bCIDR, "dev", ifname)
	run(t, "ip", "-n", a, "link", "set", ifname, "up")
	run(t, "ip", "-n", b, "link", "set", ifname, "up")
}

// eventually polls cond every 50ms for up to 5s.
func eventually(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ping sends one ICMP echo from the named namespace with busybox's ping
// (Debian's iputils-ping is not necessarily installed).
func ping(t *testing.T, ns string, ip net.IP) {
	t.Helper()
	eventually(t, fmt.Sprintf("ping %s from %s", ip, ns), func() error {
		out, err := exec.Command("ip", "netns", "exec", ns, "busybox", "ping", "-c1", "-W1", ip.String()).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
}

// whoAmIServer listens on ip:port inside the namespace at nsPath and
// answers each connection with the source IP it sees, so a test can tell
// whether traffic was masqueraded. Stopped when the test ends.
func whoAmIServer(t *testing.T, nsPath string, ip net.IP, port int) string {
	t.Helper()
	addr := net.JoinHostPort(ip.String(), fmt.Sprint(port))
	var ln net.Listener
	// A socket belongs to the namespace of the thread that creates it.
	err := inNetNS(nsPath, func() error {
		var err error
		ln, err = net.Listen("tcp4", addr)
		return err
	})
	if err != nil {
		t.Fatalf("listen %s in %s: %v", addr, nsPath, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
			_, _ = io.WriteString(c, host+"\n")
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return addr
}

// whoAmI connects from the namespace at nsPath to addr and returns the
// source IP the server saw, polling until it answers.
func whoAmI(t *testing.T, nsPath, addr string) string {
	t.Helper()
	var seen string
	eventually(t, fmt.Sprintf("connect to %s from %s", addr, nsPath), func() error {
		var c net.Conn
		err := inNetNS(nsPath, func() error {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			var d net.Dialer
			var err error
			c, err = d.DialContext(ctx, "tcp4", addr)
			return err
		})
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return err
		}
		seen = strings.TrimSpace(line)
		return nil
	})
	return seen
}

// cannotConnect checks that addr is unreachable from the namespace.
func cannotConnect(t *testing.T, nsPath, addr string) {
	t.Helper()
	err := inNetNS(nsPath, func() error {
		c, err := net.DialTimeout("tcp4", addr, 500*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err
	})
	if err == nil {
		t.Fatalf("connected to %s from %s; want unreachable", addr, nsPath)
	}
}
