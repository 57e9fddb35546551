package kubeletserver

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"synod/internal/pki"
)

func TestClientCAsFromREST(t *testing.T) {
	ca, err := pki.NewEphemeralCA()
	if err != nil {
		t.Fatal(err)
	}
	certPEM, _, err := ca.IssueClient(APIServerClientCN, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := pki.ParseCertPEM(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(file, ca.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, cfg := range map[string]*rest.Config{
		"data": {TLSClientConfig: rest.TLSClientConfig{CAData: ca.CertPEM()}},
		"file": {TLSClientConfig: rest.TLSClientConfig{CAFile: file}},
	} {
		pool, err := ClientCAsFromREST(cfg)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, err := cert.Verify(x509VerifyClient(pool)); err != nil {
			t.Fatalf("%s: the apiserver's client certificate does not verify: %v", name, err)
		}
	}
	for name, cfg := range map[string]*rest.Config{
		"none":    {},
		"garbage": {TLSClientConfig: rest.TLSClientConfig{CAData: []byte("not PEM")}},
		"missing": {TLSClientConfig: rest.TLSClientConfig{CAFile: filepath.Join(t.TempDir(), "nope")}},
	} {
		if _, err := ClientCAsFromREST(cfg); err == nil {
			t.Fatalf("%s: want an error", name)
		}
	}
}

func x509VerifyClient(pool *x509.CertPool) x509.VerifyOptions {
	return x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
}
