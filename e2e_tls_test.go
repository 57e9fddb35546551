package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeTestPKI writes a CA and one certificate for 127.0.0.1 (server and
// client use) as PEM files in dir, and returns their paths.
func writeTestPKI(t *testing.T, dir string) (ca, cert, key string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "synod e2e CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	leafKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "synod"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &leafKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(leafKey)
	write := func(name, typ string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("cert.pem", "CERTIFICATE", der), write("key.pem", "EC PRIVATE KEY", keyDER)
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
