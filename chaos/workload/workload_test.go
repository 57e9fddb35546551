package workload

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"synod/chaos/history"
)

func TestStartNeedsEndpoints(t *testing.T) {
	if _, err := Start(context.Background(), Config{}); err == nil || !strings.Contains(err.Error(), "no etcd endpoints") {
		t.Fatalf("Start without endpoints: %v", err)
	}
}

// A store that cannot be reached fails Start within a few request
// timeouts instead of hanging: the history needs a starting revision.
func TestStartFailsWhenStoreUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	start := time.Now()
	_, err = Start(context.Background(), Config{EtcdEndpoints: []string{"http://" + addr}, RequestTimeout: 100 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "start revision") {
		t.Fatalf("Start against a closed port: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Start took %s to give up", d)
	}
}

func TestFirstWriteOKAfter(t *testing.T) {
	base := time.Unix(1000, 0)
	at := func(ms int) int64 { return base.Add(time.Duration(ms) * time.Millisecond).UnixNano() }
	ops := []history.Op{
		{Kind: history.KindPut, Call: at(0), Return: at(5), OK: true},
		{Kind: history.KindGet, Call: at(10), Return: at(12), OK: true},                   // a read: not a write
		{Kind: history.KindPut, Call: at(11), Return: history.Unknown, Unknown: true},     // unknown: not acknowledged
		{Kind: history.KindCAS, Call: at(20), Return: at(900), OK: true},                  // slow
		{Kind: history.KindDelete, Call: at(30), Return: at(400), OK: true, Found: false}, // first to finish
	}
	got, ok := FirstWriteOKAfter(ops, base.Add(time.Millisecond))
	if !ok || !got.Equal(time.Unix(0, at(400))) {
		t.Errorf("FirstWriteOKAfter = %v, %v; want %v", got, ok, time.Unix(0, at(400)))
	}
	if _, ok := FirstWriteOKAfter(ops, base.Add(time.Second)); ok {
		t.Error("a write after the last one")
	}
}

func TestRunIDIsALabelValue(t *testing.T) {
	id := runID("/chaos/1796669528051230862/")
	if id != "chaos1796669528051230862" {
		t.Errorf("runID = %q", id)
	}
}
