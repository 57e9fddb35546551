package kubelet

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	goruntime "runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vishvananda/netns"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"synod/internal/testcluster"
	"synod/internal/testimage"
	"synod/node/network"
	"synod/node/runtime"
)

// The real types satisfy the kubelet's interfaces.
var (
	_ Runtime   = (*runtime.Runtime)(nil)
	_ Network   = (*network.Network)(nil)
	_ allocator = (*network.Network)(nil)
)

func TestMain(m *testing.M) { testcluster.Main(m) }

// startCluster starts the test cluster from an OS thread that stays locked
// (so no other goroutine runs on it, and it does not exit) until the test
// ends. internal/launch starts masters with Pdeathsig=SIGKILL, which the
// kernel sends when the spawning *thread* exits, and network.NewNetNS ends
// the threads it unshares on purpose: a master forked from a thread that
// NewNetNS later takes would be killed at a random moment.
func startCluster(t *testing.T) *testcluster.Cluster {
	t.Helper()
	release := make(chan struct{})
	t.Cleanup(func() { close(release) }) // runs after the cluster's own cleanup
	got := make(chan *testcluster.Cluster, 1)
	go func() {
		goruntime.LockOSThread()
		var c *testcluster.Cluster
		defer func() {
			got <- c
			if c != nil {
				<-release
				goruntime.UnlockOSThread()
			}
		}()
		c = testcluster.Start(t, testcluster.Options{})
	}()
	c := <-got
	if c == nil {
		t.FailNow()
	}
	return c
}

// need skips the test (fails it in CI) when the machine cannot run
// containers in network namespaces.
func need(t *testing.T) {
	t.Helper()
	missing := ""
	if os.Geteuid() != 0 {
		missing = "root"
	}
	for _, bin := range []string{"containerd", "containerd-shim-runc-v2", "runc", "ip", "iptables", "iptables-restore", testimage.BusyboxPath} {
		if missing != "" {
			break
		}
		if _, err := exec.LookPath(bin); err != nil {
			missing = bin + " (apt packages containerd, runc, iproute2, iptables, busybox-static)"
		}
	}
	if missing == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("kubelet test needs %s", missing)
	}
	t.Skipf("kubelet test needs %s", missing)
}

var seq atomic.Int64

// node is a simulated worker: a network namespace playing the node's host
// side (bridge, routes, iptables), a private containerd and a kubelet.
type node struct {
	t       *testing.T
	name    string
	nsName  string
	nsPath  string
	dir     string
	rtDir   string
	podCIDR string
	client  kubernetes.Interface
	rt      *runtime.Runtime
	netw    *network.Network
	netMu   sync.Mutex
	image   string
	backoff time.Duration
	cancel  context.CancelFunc
	done    chan error
	kubelet *Kubelet
}

func newNode(t *testing.T, c *testcluster.Cluster) *node {
	t.Helper()
	n := &node{t: t, client: c.Client, backoff: 300 * time.Millisecond}
	id := seq.Add(1)
	n.name = fmt.Sprintf("kl-%d-%d", os.Getpid(), id)
	n.nsName = fmt.Sprintf("sntk%d-node%d", os.Getpid(), id)
	n.podCIDR = fmt.Sprintf("10.%d.%d.0/24", 100+id%100, os.Getpid()%250)
	path, err := network.NewNetNS(n.nsName)
	if err != nil {
		t.Fatalf("node netns: %v", err)
	}
	n.nsPath = path
	t.Cleanup(func() {
		if err := network.DeleteNetNS(n.nsName); err != nil {
			t.Errorf("delete node netns: %v", err)
		}
	})
	if out, err := exec.Command("ip", "-n", n.nsName, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("lo up: %v: %s", err, out)
	}
	// Short paths: the containerd socket lives under the runtime dir.
	n.rtDir, err = os.MkdirTemp("", "kl-rt-")
	if err != nil {
		t.Fatal(err)
	}
	n.dir = t.TempDir()
	n.startRuntime()
	t.Cleanup(n.cleanup)
	img, ref := testimage.Busybox(t, t.TempDir())
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := n.rt.ImportImage(context.Background(), f); err != nil {
		t.Fatalf("import test image: %v", err)
	}
	n.image = ref
	return n
}

func (n *node) startRuntime() {
	n.t.Helper()
	rt, err := runtime.Start(context.Background(), runtime.Config{StateDir: n.rtDir})
	if err != nil {
		n.t.Fatalf("start runtime: %v", err)
	}
	n.rt = rt
}

// cleanup removes whatever the test left: containers, the daemon, pod
// network namespaces, the node network.
func (n *node) cleanup() {
	n.stopKubelet()
	ctx := context.Background()
	if n.rt != nil {
		left, err := n.rt.ListContainers(ctx, nil)
		if err != nil {
			n.t.Errorf("list containers: %v", err)
		}
		for _, s := range left {
			uid := s.Labels[runtime.LabelPodUID]
			if err := n.rt.RemoveContainer(ctx, s.ID); err != nil {
				n.t.Errorf("remove container: %v", err)
			}
			_ = network.DeleteNetNS(netnsName(typesUID(uid)))
		}
		if err := n.rt.Close(); err != nil {
			n.t.Errorf("close runtime: %v", err)
		}
	}
	if n.netw != nil {
		for id := range n.netw.Allocated() {
			_ = network.DeleteNetNS(netnsName(typesUID(id)))
		}
		if err := n.netw.Cleanup(ctx); err != nil {
			n.t.Errorf("network cleanup: %v", err)
		}
	}
	os.RemoveAll(n.rtDir)
}

// nsDialer dials from inside the node's network namespace, where the
// bridge and the routes to the pods are (the kubelet's process is not).
func (n *node) nsDialer(ctx context.Context, network, addr string) (net.Conn, error) {
	goruntime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		goruntime.UnlockOSThread()
		return nil, err
	}
	defer orig.Close()
	target, err := netns.GetFromPath(n.nsPath)
	if err != nil {
		goruntime.UnlockOSThread()
		return nil, err
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		goruntime.UnlockOSThread()
		return nil, err
	}
	// The socket belongs to the namespace it was created in; connecting
	// and later I/O may happen on any thread.
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, addr)
	if err := netns.Set(orig); err == nil {
		goruntime.UnlockOSThread()
	} // else: leave the thread locked so it dies with the goroutine
	return conn, err
}

func (n *node) config() Config {
	return Config{
		Client:        n.client,
		NodeName:      n.name,
		NodeIP:        "192.0.2.10",
		Runtime:       n.rt,
		StateDir:      n.dir,
		Labels:        map[string]string{"synod.io/test": "yes"},
		Taints:        []v1.Taint{{Key: "synod.io/test", Value: "x", Effect: v1.TaintEffectPreferNoSchedule}},
		LeaseInterval: 500 * time.Millisecond,
		BackoffBase:   n.backoff,
		BackoffMax:    5 * time.Second,
		ProbeDialer:   n.nsDialer,
		Logger:        slog.New(slog.NewTextHandler(testWriter{n.t}, &slog.HandlerOptions{Level: slog.LevelInfo})),
		Registerer:    prometheus.NewRegistry(),
		Network: func(ctx context.Context, podCIDR string) (Network, error) {
			nw, err := network.New(network.Config{PodCIDR: podCIDR, BridgeName: "synod0", StateDir: n.dir + "/network", NetNS: n.nsPath})
			if err != nil {
				return nil, err
			}
			n.netMu.Lock()
			n.netw = nw
			n.netMu.Unlock()
			return nw, nil
		},
	}
}

func (n *node) startKubelet() {
	n.t.Helper()
	k, err := New(n.config())
	if err != nil {
		n.t.Fatalf("kubelet.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.kubelet, n.cancel, n.done = k, cancel, make(chan error, 1)
	go func() { n.done <- k.Run(ctx) }()
}

func (n *node) stopKubelet() {
	if n.cancel == nil {
		return
	}
	n.cancel()
	select {
	case err := <-n.done:
		if err != nil {
			n.t.Errorf("kubelet.Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		n.t.Errorf("kubelet did not stop")
	}
	n.cancel = nil
}

// setPodCIDR does what the controller-manager's node IPAM does.
func (n *node) setPodCIDR() {
	n.t.Helper()
	err := retry.RetryOnConflict(retry.DefaultBackoff, func() error {
		node, err := n.client.CoreV1().Nodes().Get(context.Background(), n.name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		node.Spec.PodCIDR, node.Spec.PodCIDRs = n.podCIDR, []string{n.podCIDR}
		_, err = n.client.CoreV1().Nodes().Update(context.Background(), node, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		n.t.Fatalf("set podCIDR: %v", err)
	}
}

// testWriter sends the kubelet's logs to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// eventually polls cond every 50 ms until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
