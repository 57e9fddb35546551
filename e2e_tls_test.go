package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"synod/internal/pki"
)

// writeTestPKI writes a CA and one certificate for 127.0.0.1 (server and
// client use) as PEM files in dir, and returns their paths.
func writeTestPKI(t *testing.T, dir string) (ca, cert, key string) {
	t.Helper()
	c, err := pki.EnsureCA(filepath.Join(dir, "ca"))
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := c.IssuePeer(nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return write("ca.pem", c.CertPEM()), write("cert.pem", certPEM), write("key.pem", keyPEM)
}

// Three masters with client TLS (client certificates required) and mutual TLS
// between peers, set up with etcd's flag names, used by etcdctl over TLS.
func TestTLSFlagsWithEtcdctl(t *testing.T) {
	requireTool(t, "etcdctl")
	dir := t.TempDir()
	ca, cert, key := writeTestPKI(t, dir)
	var initial, peers, clients []string
	for i := 1; i <= 3; i++ {
		peers = append(peers, "https://"+freePort(t))
		clients = append(clients, "https://"+freePort(t))
		initial = append(initial, fmt.Sprintf("t%d=%s", i, peers[i-1]))
	}
	for i := range peers {
		name := fmt.Sprintf("t%d", i+1)
		startMasterProcess(t, filepath.Join(dir, name+".log"), "--name", name, "--data-dir", filepath.Join(dir, name),
			"--listen-client-urls", clients[i], "--advertise-client-urls", clients[i],
			"--listen-peer-urls", peers[i], "--initial-advertise-peer-urls", peers[i], "--initial-cluster", strings.Join(initial, ","),
			"--cert-file", cert, "--key-file", key, "--trusted-ca-file", ca, "--client-cert-auth",
			"--peer-cert-file", cert, "--peer-key-file", key, "--peer-trusted-ca-file", ca)
	}
	tlsArgs := []string{"--cacert", ca, "--cert", cert, "--key", key}
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := etcdctl(t, clients[2:], "", append(tlsArgs, "put", "tls-key", "secret")...)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "t3.log"))
			t.Fatalf("put over TLS never succeeded: %v\n%s", err, log)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if out := mustEtcdctl(t, clients[:1], append(tlsArgs, "get", "tls-key", "--print-value-only")...); out != "secret\n" {
		t.Fatalf("get over TLS = %q", out)
	}
	// Without a client certificate the server refuses the client.
	if _, err := etcdctl(t, clients[:1], "", "--cacert", ca, "--dial-timeout=2s", "--command-timeout=3s", "get", "tls-key"); err == nil {
		t.Fatal("a client without a certificate was served despite --client-cert-auth")
	}
}
