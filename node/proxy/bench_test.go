package proxy

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"synod/node/iptbackend"
)

// bigPorts is n services (half of them NodePorts) with m ready endpoints
// each.
func bigPorts(n, m int) []servicePort {
	ports := make([]servicePort, n)
	for i := range ports {
		sp := servicePort{name: fmt.Sprintf("bench/svc-%d:http", i), protocol: "tcp",
			clusterIP: fmt.Sprintf("10.96.%d.%d", i/250, i%250+1), port: 80}
		if i%2 == 0 {
			sp.nodePort = int32(30000 + i)
		}
		for j := range m {
			sp.endpoints = append(sp.endpoints, endpoint{ip: netip.AddrFrom4([4]byte{10, 244, byte(j), byte(i%250 + 1)}), port: int32(8000 + i/250)})
		}
		ports[i] = sp
	}
	return ports
}

// BenchmarkSync is the proxy benchmark: 1,000 services × 10
// endpoints programmed into a fresh namespace, with each iptables backend
// (a fresh worker picks legacy; one on a host whose rules are in nft uses
// nft). "full" is a sync that writes every chain (startup, hourly);
// "partial" is the sync after one endpoint of one service changed, which
// is what a change costs.
//
//	go test -run '^$' -bench Sync -benchtime 3x ./node/proxy
func BenchmarkSync(b *testing.B) {
	for _, backend := range []iptbackend.Backend{iptbackend.Legacy, iptbackend.NFT} {
		for _, mode := range []string{"full", "partial"} {
			b.Run(string(backend)+"/"+mode, func(b *testing.B) {
				benchSync(b, backend, mode == "full")
			})
		}
	}
}

func benchSync(b *testing.B, backend iptbackend.Backend, full bool) {
	ctx := context.Background()
	path := benchNetNS(b)
	r, _, err := NewAutoRunner(ctx, path, backend)
	if err != nil {
		b.Fatal(err)
	}
	if err := ensureJumps(r); err != nil {
		b.Fatal(err)
	}
	ports := bigPorts(1000, 10)
	applied := generate(ports, "10.244.0.0/16")
	if !full {
		if err := r.Restore(ctx, restoreData(applied, nil, nil)); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	var took time.Duration
	for i := range b.N {
		start := time.Now()
		if full {
			if err := r.Restore(ctx, restoreData(generate(ports, "10.244.0.0/16"), nil, nil)); err != nil {
				b.Fatal(err)
			}
		} else {
			// Endpoint 3 of service i moves to another port and back.
			sp := &ports[i%len(ports)]
			old := sp.endpoints[3]
			sp.endpoints[3].port += 1000
			rs := generate(ports, "10.244.0.0/16")
			if err := r.Restore(ctx, restoreData(rs, applied, []string{sepChain(sp, old)})); err != nil {
				b.Fatal(err)
			}
			applied = rs
		}
		took += time.Since(start)
	}
	b.ReportMetric(float64(applied.nat.ruleCount()), "nat-rules")
	b.ReportMetric(took.Seconds()/float64(b.N), "s/sync")
}

// benchNetNS is newNetNS for benchmarks.
func benchNetNS(b *testing.B) string {
	name := fmt.Sprintf("synod-proxy-bench-%d", netnsSeq.Add(1))
	if err := runCmd("ip", "netns", "add", name); err != nil {
		b.Skip(err)
	}
	b.Cleanup(func() { runCmd("ip", "netns", "del", name) })
	return "/run/netns/" + name
}
