package main

import (
	"crypto/x509"
	"encoding/base64"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/client-go/tools/clientcmd"

	"synod/internal/pki"
)

// TestPKI issues what ansible/site.yml needs and checks it verifies against
// the CA, that nothing is ever overwritten and that bad usage exits 2.
func TestPKI(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "pki")
	if code, _, stderr := runCLI(t, "pki", "ca", "--dir", ca); code != 0 {
		t.Fatalf("pki ca: exit %d: %s", code, stderr)
	}
	caCert, err := os.ReadFile(filepath.Join(ca, pki.CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caCert)

	crt, key := filepath.Join(dir, "m1", "peer.crt"), filepath.Join(dir, "m1", "peer.key")
	if code, _, stderr := runCLI(t, "pki", "cert", "--dir", ca, "--kind", "peer", "--host", "10.95.0.11", "--host", "m1",
		"--cert-out", crt, "--key-out", key); code != 0 {
		t.Fatalf("pki cert peer: exit %d: %s", code, stderr)
	}
	data, err := os.ReadFile(crt)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := pki.ParseCertPEM(data)
	if err != nil {
		t.Fatal(err)
	}
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: "m1", KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
			t.Errorf("peer certificate for usage %v: %v", usage, err)
		}
	}
	if !containsIP(cert.IPAddresses, "10.95.0.11") {
		t.Errorf("peer certificate IPs %v lack 10.95.0.11", cert.IPAddresses)
	}
	if fi, err := os.Stat(key); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key mode: %v %v", fi.Mode(), err)
	}
	// Never overwritten: the second call fails and leaves the file as it was.
	if code, _, stderr := runCLI(t, "pki", "cert", "--dir", ca, "--kind", "peer", "--cert-out", crt, "--key-out", key); code != 1 ||
		!strings.Contains(stderr, "exists") {
		t.Errorf("re-issue over an existing file: exit %d, %q", code, stderr)
	}
	if again, _ := os.ReadFile(crt); string(again) != string(data) {
		t.Error("an existing certificate was overwritten")
	}

	kc := filepath.Join(dir, "w1.kubeconfig")
	if code, _, stderr := runCLI(t, "pki", "kubeconfig", "--dir", ca, "--server", "https://10.95.0.11:6443",
		"--user", "system:node:w1", "--group", "system:nodes", "--out", kc); code != 0 {
		t.Fatalf("pki kubeconfig: exit %d: %s", code, stderr)
	}
	cfg, err := clientcmd.LoadFromFile(kc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := cfg.Contexts[cfg.CurrentContext]
	if ctx == nil || cfg.Clusters[ctx.Cluster].Server != "https://10.95.0.11:6443" {
		t.Fatalf("kubeconfig context/server: %+v", cfg)
	}
	client, err := pki.ParseCertPEM(cfg.AuthInfos[ctx.AuthInfo].ClientCertificateData)
	if err != nil {
		t.Fatal(err)
	}
	if client.Subject.CommonName != "system:node:w1" || len(client.Subject.Organization) != 1 || client.Subject.Organization[0] != "system:nodes" {
		t.Errorf("client subject %v", client.Subject)
	}

	gk := filepath.Join(dir, "gossip.key")
	if code, _, stderr := runCLI(t, "pki", "gossip-key", "--out", gk); code != 0 {
		t.Fatalf("pki gossip-key: exit %d: %s", code, stderr)
	}
	raw, _ := os.ReadFile(gk)
	if k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(raw))); err != nil || len(k) != 32 {
		t.Errorf("gossip key %q: %d bytes, %v", raw, len(k), err)
	}

	for _, args := range [][]string{
		{"pki", "cert", "--dir", ca, "--kind", "bogus", "--cert-out", "x", "--key-out", "y"},
		{"pki", "cert", "--dir", ca, "--kind", "client", "--cert-out", "x", "--key-out", "y"},
		{"pki", "cert", "--dir", ca, "--kind", "serving", "--user", "u", "--cert-out", "x", "--key-out", "y"},
		{"pki", "kubeconfig", "--dir", ca, "--out", "x"},
		{"pki", "ca"},
	} {
		if code, _, _ := runCLI(t, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}

func containsIP(ips []net.IP, want string) bool {
	for _, ip := range ips {
		if ip.String() == want {
			return true
		}
	}
	return false
}
