package raftstore

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// testPKI is a throwaway CA and one leaf certificate valid for 127.0.0.1,
// used both as a server and a client certificate.
type testPKI struct {
	pool *x509.CertPool
	cert tls.Certificate
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "synod test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "synod"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &testPKI{pool: pool, cert: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}}
}

func TestTLSClientAndMutualTLSPeers(t *testing.T) {
	pki := newTestPKI(t)
	c := newTestCluster(t, 3, func(cfg *Config) {
		cfg.ClientTLS = &tls.Config{Certificates: []tls.Certificate{pki.cert}, ClientCAs: pki.pool}
		cfg.PeerServerTLS = &tls.Config{Certificates: []tls.Certificate{pki.cert}, ClientCAs: pki.pool, ClientAuth: tls.RequireAndVerifyClientCert}
		cfg.PeerClientTLS = &tls.Config{Certificates: []tls.Certificate{pki.cert}, RootCAs: pki.pool}
	})
	ctx := ctxT(t, 30*time.Second)
	var eps []string
	for i := range c.cfgs {
		eps = append(eps, strings.Replace(c.endpoint(i), "http://", "https://", 1))
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps[2:], DialTimeout: 5 * time.Second,
		TLS: &tls.Config{RootCAs: pki.pool, Certificates: []tls.Certificate{pki.cert}}})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if _, err := cli.Put(ctx, "secure", "yes"); err != nil {
		t.Fatalf("put over TLS (forwarded over mTLS peers): %v", err)
	}
	g, err := cli.Get(ctx, "secure")
	if err != nil || len(g.Kvs) != 1 {
		t.Fatalf("get over TLS: %v %v", g, err)
	}
	// A peer without a client certificate is refused by the peer port.
	host, _ := parseURLHost(c.cfgs[0].AdvertisePeerURL)
	conn, err := tls.Dial("tcp", host, &tls.Config{RootCAs: pki.pool})
	if err == nil {
		conn.Write(append(append([]byte{}, peerMagic...), protoGRPC))
		buf := make([]byte, 1)
		conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, rerr := conn.Read(buf); rerr == nil {
			t.Fatal("peer port accepted a connection without a client certificate")
		}
		conn.Close()
	}
}
