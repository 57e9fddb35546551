package raftstore

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestMetricsAndHealthEndpoints(t *testing.T) {
	var metricsURL string
	c := newTestCluster(t, 1, func(cfg *Config) {
		metricsURL = "http://" + freeAddr(t)
		cfg.ListenMetricsURLs = []string{metricsURL}
	})
	ctx := ctxT(t, 20*time.Second)
	if _, err := c.client(0).Put(ctx, "m", "1"); err != nil {
		t.Fatal(err)
	}
	get := func(path string) (int, string) {
		resp, err := http.Get(metricsURL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/health"); code != 200 || !strings.Contains(body, `"health":"true"`) {
		t.Fatalf("/health = %d %s", code, body)
	}
	_, body := get("/metrics")
	for _, want := range []string{"synod_raft_is_leader 1", `synod_proposals_total{result="ok",type="put"} 1`, "synod_mvcc_revision 2"} {
		if !strings.Contains(body, want) {
			t.Fatalf("/metrics lacks %q", want)
		}
	}
}
