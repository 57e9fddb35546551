package raftstore

import (
	"crypto/tls"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"synod/internal/pki"
)

// testPKI is a throwaway CA and one certificate valid for 127.0.0.1, used
// both as a server and a client certificate.
type testPKI struct {
	pool *x509.CertPool
	cert tls.Certificate
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	ca, err := pki.EnsureCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.IssuePeer(nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return &testPKI{pool: ca.Pool(), cert: cert}
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
