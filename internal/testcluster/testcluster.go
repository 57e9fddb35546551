// Package testcluster starts real synod clusters (processes on loopback,
// with the Kubernetes API) for tests outside the root package, and runs a
// controller in-process against them the way the controller-manager does.
package testcluster

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/record"

	"synod/components/controller"
	"synod/internal/launch"
)

// BinaryEnv names a prebuilt synod binary to use instead of building one.
const BinaryEnv = "SYNOD_BINARY"

var (
	binary    string
	binaryDir string
)

// Main is a TestMain: it builds the synod binary once for the package (or
// takes $SYNOD_BINARY), runs the tests and removes the build.
func Main(m *testing.M) {
	if p := os.Getenv(BinaryEnv); p != "" {
		binary = p
	} else {
		dir, err := os.MkdirTemp("", "synod-testbin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		binaryDir = dir
		binary = filepath.Join(dir, "synod")
		if out, err := exec.Command("go", "build", "-o", binary, "synod").CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build synod: %v\n%s", err, out)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	if binaryDir != "" {
		os.RemoveAll(binaryDir)
	}
	os.Exit(code)
}

// Binary is the synod binary Main built (or $SYNOD_BINARY).
func Binary() string { return binary }

// Options configures Start.
type Options struct {
	Masters int // default 1
	// Components runs the scheduler and controller-manager in the masters;
	// without it they run none, and the test runs what it tests itself.
	Components bool
	ExtraArgs  []string // more `synod master` flags
}

// Cluster is a running cluster and an admin client for it.
type Cluster struct {
	Launch     *launch.Cluster
	Config     *rest.Config // admin (system:masters), not rate limited
	Client     kubernetes.Interface
	Kubeconfig string
}

// Start starts a cluster that is stopped when the test ends, and waits
// until every master's API answers and the system namespaces exist.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if binary == "" {
		t.Fatal("testcluster: no synod binary; use testcluster.Main as TestMain")
	}
	if opts.Masters == 0 {
		opts.Masters = 1
	}
	args := append([]string(nil), opts.ExtraArgs...)
	if !opts.Components {
		args = append(args, "--scheduler=false", "--controllers=-*")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	lc, err := launch.Start(ctx, launch.Options{Binary: binary, Masters: opts.Masters, Dir: t.TempDir(), API: true,
		ExtraArgs: args, StopTimeout: 10 * time.Second})
	if err != nil {
		t.Fatalf("testcluster: start %d masters: %v", opts.Masters, err)
	}
	t.Cleanup(func() { lc.Stop() })
	if err := lc.WaitReady(ctx); err != nil {
		t.Fatalf("testcluster: %v", err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", lc.KubeconfigPath())
	if err != nil {
		t.Fatalf("testcluster: kubeconfig: %v", err)
	}
	cfg.QPS, cfg.Burst = -1, 0 // tests measure the cluster, not client-side throttling
	c := &Cluster{Launch: lc, Config: cfg, Kubeconfig: lc.KubeconfigPath()}
	c.Client = kubernetes.NewForConfigOrDie(cfg)
	for _, m := range lc.Masters() {
		mc := rest.CopyConfig(cfg)
		mc.Host = m.APIURL
		client := kubernetes.NewForConfigOrDie(mc)
		for {
			_, err := client.CoreV1().Namespaces().Get(ctx, metav1.NamespaceSystem, metav1.GetOptions{})
			if err == nil {
				_, err = client.CoreV1().Namespaces().Get(ctx, v1.NamespaceNodeLease, metav1.GetOptions{})
			}
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("testcluster: API on %s not ready: %v", m.APIURL, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return c
}

// NewControllerContext is what the controller-manager gives a controller
// for one term: a client, a fresh shared informer factory and event
// recorders (events are written to the cluster until the test ends).
func NewControllerContext(t testing.TB, c *Cluster) *controller.Context {
	t.Helper()
	client := kubernetes.NewForConfigOrDie(c.Config)
	events := record.NewBroadcaster()
	events.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	t.Cleanup(events.Shutdown)
	opts := controller.DefaultOptions()
	return &controller.Context{
		Client:    client,
		Informers: informers.NewSharedInformerFactory(client, 0),
		Recorder: func(component string) record.EventRecorder {
			return events.NewRecorder(scheme.Scheme, v1.EventSource{Component: component})
		},
		Logger:  slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Options: opts,
	}
}

// RunControllers builds the controllers from cc (as the manager does),
// starts the informers, waits for their caches and runs the controllers
// until the test ends; cleanup waits for every Run to return.
func RunControllers(t testing.TB, cc *controller.Context, inits ...controller.InitFunc) {
	t.Helper()
	var runners []controller.Runner
	for _, init := range inits {
		r, err := init(cc)
		if err != nil {
			t.Fatalf("testcluster: build controller: %v", err)
		}
		runners = append(runners, r)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cc.Informers.Start(ctx.Done())
	for typ, ok := range cc.Informers.WaitForCacheSync(ctx.Done()) {
		if !ok {
			cancel()
			t.Fatalf("testcluster: informer for %v did not sync", typ)
		}
	}
	var wg sync.WaitGroup
	for _, r := range runners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.Run(ctx)
		}()
	}
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		cc.Informers.Shutdown()
	})
}

// testWriter sends log lines to t.Log (only shown for failing tests or -v).
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p[:len(p)-min(1, len(p))]))
	return len(p), nil
}
