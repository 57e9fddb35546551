package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"syscall"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"synod/internal/testcluster"
)

// serveIdentity listens on addr inside the namespace at netns and answers
// every connection with addr, until the test ends.
func serveIdentity(t *testing.T, netns, addr string) {
	t.Helper()
	var ln net.Listener
	if err := InNetNS(netns, func() (err error) {
		ln, err = net.Listen("tcp4", addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(conn, addr)
			conn.Close()
		}
	}()
}

// ask connects to addr from inside the namespace and returns the answer.
func ask(netns, addr string) (string, error) {
	var conn net.Conn
	if err := InNetNS(netns, func() (err error) {
		conn, err = net.DialTimeout("tcp4", addr, 2*time.Second)
		return err
	}); err != nil {
		return "", err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(2 * time.Second))
	b, err := io.ReadAll(conn)
	return string(b), err
}

// testTraffic proves the rules work, not only that they exist: inside the
// test's namespace three "endpoints" (addresses on an interface with
// a TCP server each) sit behind a NodePort service; connections to the
// cluster IP and to the node address's NodePort, made inside the
// namespace (nat OUTPUT), reach every endpoint.
func testTraffic(t *testing.T, c *testcluster.Cluster) {
	ctx := context.Background()
	s := startProxier(t, c, "10.244.0.0/16")
	const nodeIP = "192.168.77.1"
	eps := []string{"10.244.7.1", "10.244.7.2", "10.244.7.3"}
	// A veth pair with both ends in the namespace stands in for the
	// node's uplink (the dummy module may be missing from the kernel).
	run(t, "ip", "-n", s.netns, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0-peer")
	run(t, "ip", "-n", s.netns, "link", "set", "eth0-peer", "up")
	run(t, "ip", "-n", s.netns, "link", "set", "eth0", "up")
	run(t, "ip", "-n", s.netns, "addr", "add", nodeIP+"/24", "dev", "eth0")
	for _, ip := range eps {
		run(t, "ip", "-n", s.netns, "addr", "add", ip+"/32", "dev", "eth0")
		serveIdentity(t, s.path, ip+":8080")
	}
	// Local connections to a cluster IP need a route before nat OUTPUT
	// can rewrite them, as on a real node (its default route).
	run(t, "ip", "-n", s.netns, "route", "add", "10.96.0.0/12", "dev", "eth0", "src", nodeIP)

	createNamespace(t, c.Client, "traffic")
	svc := createService(t, c.Client, webService("traffic", "web", v1.ServiceTypeNodePort))
	if _, err := c.Client.DiscoveryV1().EndpointSlices("traffic").Create(ctx, endpointSlice(svc, eps...), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	clusterAddr := net.JoinHostPort(svc.Spec.ClusterIP, "80")
	nodePortAddr := net.JoinHostPort(nodeIP, strconv.Itoa(int(svc.Spec.Ports[0].NodePort)))
	// Connect only once the rules are in: a connection whose first packet
	// passed un-NATed keeps its conntrack entry, and so its fate.
	sp := &servicePort{name: "traffic/web:http", protocol: "tcp"}
	eventually(t, time.Second, "rules programmed", func() bool {
		return len(svcJumps(save(t, s.runner, "nat"), svcChain(sp))) == len(eps)
	})
	for _, addr := range []string{clusterAddr, nodePortAddr} {
		seen := map[string]int{}
		// With three equally likely endpoints, 60 connections miss one
		// with probability about 3·(2/3)^60 ≈ 1e-10.
		for range 60 {
			got, err := ask(s.path, addr)
			if err != nil {
				t.Fatalf("connect to %s: %v", addr, err)
			}
			seen[got]++
		}
		t.Logf("%s answered by %v", addr, seen)
		for _, ip := range eps {
			if seen[ip+":8080"] == 0 {
				t.Errorf("%s never reached endpoint %s: %v", addr, ip, seen)
			}
		}
	}

	// With no endpoints the cluster IP refuses at once (REJECT).
	if err := c.Client.DiscoveryV1().EndpointSlices("traffic").Delete(ctx, "web-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "connection refused", func() bool {
		_, err := ask(s.path, clusterAddr)
		return err != nil && isRefused(err)
	})
}

func isRefused(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }
