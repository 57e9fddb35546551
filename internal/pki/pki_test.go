package pki

import (
	"bytes"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
)

func mustCA(t *testing.T, dir string) *CA {
	t.Helper()
	ca, err := EnsureCA(dir)
	if err != nil {
		t.Fatalf("EnsureCA(%s): %v", dir, err)
	}
	return ca
}

func TestEnsureCACreatesThenLoads(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	ca1 := mustCA(t, dir)
	ca2 := mustCA(t, dir)
	if !bytes.Equal(ca1.CertPEM(), ca2.CertPEM()) {
		t.Fatal("second EnsureCA returned a different CA certificate")
	}
	if !ca1.key.Equal(ca2.key) {
		t.Fatal("second EnsureCA returned a different CA key")
	}
	c := ca1.Cert()
	if c.Subject.CommonName != CAName || !c.IsCA {
		t.Fatalf("CA subject %q IsCA=%v", c.Subject.CommonName, c.IsCA)
	}
	if got := c.NotAfter.Sub(time.Now()); got < CAValidity-time.Hour {
		t.Fatalf("CA valid for %s, want ~%s", got, CAValidity)
	}
	for name, wperm := range map[string]os.FileMode{CAKeyFile: 0o600, CACertFile: 0o644} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != wperm {
			t.Fatalf("%s mode %v, want %v", name, fi.Mode().Perm(), wperm)
		}
	}
	// A cert issued by the first copy verifies against the second's pool.
	certPEM, _, err := ca1.IssueClient("alice", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	mustVerify(t, ca2.Pool(), certPEM, x509.ExtKeyUsageClientAuth, "")
}

func TestEnsureCAPartial(t *testing.T) {
	dir := t.TempDir()
	mustCA(t, dir)
	if err := os.Remove(filepath.Join(dir, CAKeyFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := EnsureCA(dir); !errors.Is(err, ErrPartialCA) {
		t.Fatalf("EnsureCA with only ca.crt: %v, want ErrPartialCA", err)
	}
}

func TestEnsureCAKeyMismatch(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	mustCA(t, a)
	mustCA(t, b)
	key, err := os.ReadFile(filepath.Join(b, CAKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(a, CAKeyFile), key, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := EnsureCA(a); !errors.Is(err, ErrKeyMismatch) {
		t.Fatalf("EnsureCA with foreign key: %v, want ErrKeyMismatch", err)
	}
}

func mustVerify(t *testing.T, pool *x509.CertPool, certPEM []byte, usage x509.ExtKeyUsage, dnsName string) *x509.Certificate {
	t.Helper()
	cert, err := ParseCertPEM(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	_, err = cert.Verify(x509.VerifyOptions{
		Roots:     pool,
		DNSName:   dnsName,
		KeyUsages: []x509.ExtKeyUsage{usage},
	})
	if err != nil {
		t.Fatalf("verify %q (dns %q): %v", cert.Subject.CommonName, dnsName, err)
	}
	return cert
}

func TestIssueServing(t *testing.T) {
	ca := mustCA(t, t.TempDir())
	certPEM, keyPEM, err := ca.IssueServing([]string{"node1.example", "10.0.0.7", "localhost", ""}, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pool := ca.Pool()
	for _, h := range []string{"localhost", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "node1.example", "127.0.0.1", "10.0.0.7"} {
		mustVerify(t, pool, certPEM, x509.ExtKeyUsageServerAuth, h)
	}
	cert, _ := ParseCertPEM(certPEM)
	wdns := []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "node1.example"}
	if !slices.Equal(cert.DNSNames, wdns) {
		t.Fatalf("DNS SANs %v, want %v", cert.DNSNames, wdns)
	}
	wips := []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.0.0.7")}
	if len(cert.IPAddresses) != len(wips) {
		t.Fatalf("IP SANs %v, want %v", cert.IPAddresses, wips)
	}
	for i := range wips {
		if !cert.IPAddresses[i].Equal(wips[i]) {
			t.Fatalf("IP SANs %v, want %v", cert.IPAddresses, wips)
		}
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		t.Fatal("serving cert verified for client auth")
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: "evil.example"}); err == nil {
		t.Fatal("serving cert verified for a host it does not name")
	}
	if d := cert.NotAfter.Sub(time.Now()); d > 24*time.Hour || d < 23*time.Hour {
		t.Fatalf("validity %s, want ~24h", d)
	}
	key, err := ParseKeyPEM(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		t.Fatal("key does not match certificate")
	}
}

func TestIssueClient(t *testing.T) {
	ca := mustCA(t, t.TempDir())
	certPEM, _, err := ca.IssueClient("alice", []string{"system:masters", "dev"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	cert := mustVerify(t, ca.Pool(), certPEM, x509.ExtKeyUsageClientAuth, "")
	if cert.Subject.CommonName != "alice" {
		t.Fatalf("CN %q", cert.Subject.CommonName)
	}
	// Organization is a DER SET, so order is not preserved.
	if w := []string{"dev", "system:masters"}; !slices.Equal(slices.Sorted(slices.Values(cert.Subject.Organization)), w) {
		t.Fatalf("O %v, want %v", cert.Subject.Organization, w)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
		t.Fatal("client cert verified for server auth")
	}
	if d := cert.NotAfter.Sub(time.Now()); d < DefaultValidity-time.Hour {
		t.Fatalf("validity %s, want DefaultValidity", d)
	}
	if _, _, err := ca.IssueClient("", nil, time.Hour); err == nil {
		t.Fatal("IssueClient with empty user succeeded")
	}
	// Never outlives the CA.
	long, _, err := ca.IssueClient("bob", nil, 100*365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	lc, _ := ParseCertPEM(long)
	if lc.NotAfter.After(ca.Cert().NotAfter) {
		t.Fatalf("client cert NotAfter %s after CA NotAfter %s", lc.NotAfter, ca.Cert().NotAfter)
	}
}

func TestKubeconfig(t *testing.T) {
	ca := mustCA(t, t.TempDir())
	certPEM, keyPEM, err := ca.IssueClient("admin", []string{"system:masters"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "sub", "admin.kubeconfig")
	const server = "https://127.0.0.1:6443"
	if err := WriteKubeconfig(path, server, ca.CertPEM(), certPEM, keyPEM, "admin"); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("kubeconfig mode %v, want 0600", fi.Mode().Perm())
	}
	cfg, err := clientcmd.LoadFromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.CurrentContext != "synod" || cfg.Contexts["synod"] == nil || cfg.Contexts["synod"].AuthInfo != "admin" {
		t.Fatalf("contexts %v current %q", cfg.Contexts, cfg.CurrentContext)
	}
	if a := cfg.AuthInfos["admin"]; a == nil || a.ClientCertificate != "" || a.ClientKey != "" {
		t.Fatalf("auth info %+v: want embedded data, not paths", a)
	}
	rc, err := clientcmd.NewDefaultClientConfig(*cfg, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	if rc.Host != server {
		t.Fatalf("host %q", rc.Host)
	}
	tc := rc.TLSClientConfig
	if !bytes.Equal(tc.CAData, ca.CertPEM()) || !bytes.Equal(tc.CertData, certPEM) || !bytes.Equal(tc.KeyData, keyPEM) {
		t.Fatal("rest.Config TLS data differs from what was written")
	}

	b, err := Kubeconfig(server, ca.CertPEM(), certPEM, keyPEM, "admin")
	if err != nil {
		t.Fatal(err)
	}
	onDisk, _ := os.ReadFile(path)
	if !bytes.Equal(b, onDisk) {
		t.Fatal("Kubeconfig bytes differ from WriteKubeconfig's file")
	}
	if _, err := Kubeconfig("", nil, certPEM, keyPEM, "admin"); err == nil {
		t.Fatal("Kubeconfig without server succeeded")
	}
}

func TestIssuePeer(t *testing.T) {
	ca := mustCA(t, t.TempDir())
	certPEM, _, err := ca.IssuePeer([]string{"10.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	mustVerify(t, ca.Pool(), certPEM, x509.ExtKeyUsageServerAuth, "127.0.0.1")
	mustVerify(t, ca.Pool(), certPEM, x509.ExtKeyUsageClientAuth, "")
}
