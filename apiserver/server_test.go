package apiserver

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"synod/raftstore"
)

// testAPI is a real one-member raftstore on loopback with an apiserver
// in front of it, served by httptest (plain HTTP: transport security and
// authentication are tested separately).
type testAPI struct {
	srv    *Server
	http   *httptest.Server
	client *kubernetes.Clientset
	config *rest.Config
}

func freeURL(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return "http://" + ln.Addr().String()
}

func newTestAPI(t testing.TB) *testAPI {
	t.Helper()
	peer, client := freeURL(t), freeURL(t)
	cfg := raftstore.Config{Name: "m1", DataDir: filepath.Join(t.TempDir(), "m1"), ListenClientURLs: []string{client},
		ListenPeerURLs: []string{peer}, AdvertisePeerURL: peer, InitialCluster: []raftstore.Member{{Name: "m1", PeerURL: peer}}}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := raftstore.Open(cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	kv, err := clientv3.New(clientv3.Config{Endpoints: []string{client}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kv.Close() })
	srv, err := New(Config{Store: kv, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		if err := srv.Bootstrap(ctx); err == nil {
			break
		} else if ctx.Err() != nil {
			t.Fatalf("bootstrap: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	rc := &rest.Config{Host: hs.URL, QPS: -1}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	return &testAPI{srv: srv, http: hs, client: cs, config: rc}
}

var _ = fmt.Sprint
