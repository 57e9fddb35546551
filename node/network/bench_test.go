package network

import (
	"context"
	"fmt"
	"os"
	"testing"
)

// BenchmarkSetupTeardown measures one pod's Setup plus Teardown on a node
// namespace (namespace creation not included).
func BenchmarkSetupTeardown(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	nodeName := fmt.Sprintf("snbench%d-node", nsSeq.Add(1))
	nodePath, err := NewNetNS(nodeName)
	if err != nil {
		b.Fatal(err)
	}
	defer DeleteNetNS(nodeName)
	podName := fmt.Sprintf("snbench%d-pod", nsSeq.Add(1))
	podPath, err := NewNetNS(podName)
	if err != nil {
		b.Fatal(err)
	}
	defer DeleteNetNS(podName)
	n, err := New(Config{PodCIDR: "10.251.0.0/16", StateDir: b.TempDir(), NetNS: nodePath})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		id := fmt.Sprintf("p%d", i)
		if _, err := n.Setup(ctx, id, podPath); err != nil {
			b.Fatal(err)
		}
		if err := n.Teardown(ctx, id, podPath); err != nil {
			b.Fatal(err)
		}
	}
}
