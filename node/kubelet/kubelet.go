package kubelet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"synod/node/runtime"
)

// Version is the kubeletVersion the Node reports.
const Version = "v1.32.0-synod"

// Runtime is what the kubelet needs from the container runtime;
// *synod/node/runtime.Runtime satisfies it.
type Runtime interface {
	GetImage(ctx context.Context, ref string) (runtime.Image, error)
	EnsureImage(ctx context.Context, ref string, policy runtime.PullPolicy) (runtime.Image, error)
	CreateContainer(ctx context.Context, spec runtime.ContainerSpec) error
	StartContainer(ctx context.Context, id string) error
	StopContainer(ctx context.Context, id string, grace time.Duration) error
	RemoveContainer(ctx context.Context, id string) error
	ContainerStatus(ctx context.Context, id string) (runtime.State, error)
	ListContainers(ctx context.Context, selector map[string]string) ([]runtime.State, error)
	WaitContainer(ctx context.Context, id string) (runtime.State, error)
	Exec(ctx context.Context, id string, cmd []string, stdin io.Reader, stdout, stderr io.Writer, tty bool) (int, error)
}

// runtimeVersioner is optionally implemented by a Runtime to report the
// daemon's version for nodeInfo.containerRuntimeVersion.
type runtimeVersioner interface {
	Version(ctx context.Context) (string, error)
}

// Network is the node's pod network; *synod/node/network.Network
// satisfies it. Setup must be idempotent (a restarted kubelet calls it
// again for running pods and must get the same IP).
type Network interface {
	Setup(ctx context.Context, podID, netnsPath string) (net.IP, error)
	Teardown(ctx context.Context, podID, netnsPath string) error
}

// NetworkFactory builds the pod network once the Node has a podCIDR.
type NetworkFactory func(ctx context.Context, podCIDR string) (Network, error)

// NetNS creates and deletes the pods' network namespaces by name; the
// default is synod/node/network's NewNetNS and DeleteNetNS (bind mounts
// under /run/netns).
type NetNS struct {
	Create func(name string) (path string, err error)
	Delete func(name string) error
	Path   func(name string) string
}

// Config configures a Kubelet.
type Config struct {
	Client   kubernetes.Interface
	NodeName string
	// NodeIP is the node's InternalIP (and the pods' hostIP).
	NodeIP string
	// Runtime runs the containers.
	Runtime Runtime
	// Network is called once spec.podCIDR is known; nil runs only
	// hostNetwork pods (the others wait with NetworkNotReady).
	Network NetworkFactory
	// NetNS overrides how pod network namespaces are made (tests).
	NetNS NetNS
	// StateDir holds pod volumes and logs; keep it across restarts.
	StateDir string
	// Labels are added to the Node's labels (--node-labels).
	Labels map[string]string
	// Taints are set when the Node is created (--register-with-taints);
	// an existing Node's taints are left alone.
	Taints []v1.Taint
	// KubeletPort is the kubelet server's port, reported in the Node's
	// daemonEndpoints so the apiserver finds it for logs and exec (0: none).
	KubeletPort int
	// MaxPods is the pods capacity (110 if zero).
	MaxPods int
	// LeaseInterval is how often the node Lease is renewed (10 s).
	LeaseInterval time.Duration
	// NodeStatusInterval is how often the Node status is posted when
	// nothing changed (1 min); changes are posted within StatusCheck (10 s).
	NodeStatusInterval time.Duration
	// ResyncInterval is how often every pod worker re-checks its pod (10 s).
	ResyncInterval time.Duration
	// BackoffBase and BackoffMax are the crash-loop backoff (10 s doubling
	// to 300 s); a container that ran BackoffReset (10 min) resets it.
	BackoffBase, BackoffMax, BackoffReset time.Duration
	// ProbeDialer dials httpGet and tcpSocket probes (a net.Dialer in the
	// kubelet's network namespace if nil).
	ProbeDialer func(ctx context.Context, network, addr string) (net.Conn, error)
	Logger      *slog.Logger
	Registerer  prometheus.Registerer
}

// Labels the kubelet puts on its containers, besides the runtime's pod UID
// and container name, so a restarted kubelet can rebuild its state.
const (
	labelNode         = "io.synod.kubelet/node"
	labelPodName      = "io.synod.kubelet/pod-name"
	labelPodNamespace = "io.synod.kubelet/pod-namespace"
	labelRestartCount = "io.synod.kubelet/restart-count"
	labelInit         = "io.synod.kubelet/init"
)

// Kubelet runs the pods bound to one node.
type Kubelet struct {
	cfg     Config
	log     *slog.Logger
	client  kubernetes.Interface
	rt      Runtime
	metrics *metrics

	broadcaster record.EventBroadcaster
	recorder    record.EventRecorder

	podLister corelisters.PodLister

	// netMu guards network and podCIDR; netReady is closed once the
	// network exists.
	netMu    sync.Mutex
	network  Network
	podCIDR  string
	netReady chan struct{}

	// nodeKick asks the node status loop to post now (a condition changed).
	nodeKick chan struct{}

	mu      sync.Mutex
	workers map[types.UID]*podWorker
	wg      sync.WaitGroup // pod workers and orphan cleanups
}

// New checks cfg and returns a Kubelet; Run starts it.
func New(cfg Config) (*Kubelet, error) {
	switch {
	case cfg.Client == nil:
		return nil, errors.New("kubelet: Config.Client is required")
	case cfg.NodeName == "":
		return nil, errors.New("kubelet: Config.NodeName is required")
	case cfg.Runtime == nil:
		return nil, errors.New("kubelet: Config.Runtime is required")
	case cfg.StateDir == "":
		return nil, errors.New("kubelet: Config.StateDir is required")
	}
	if cfg.NodeIP != "" && net.ParseIP(cfg.NodeIP) == nil {
		return nil, fmt.Errorf("kubelet: invalid node IP %q", cfg.NodeIP)
	}
	if cfg.MaxPods == 0 {
		cfg.MaxPods = 110
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.LeaseInterval, 10*time.Second)
	def(&cfg.NodeStatusInterval, time.Minute)
	def(&cfg.ResyncInterval, 10*time.Second)
	def(&cfg.BackoffBase, 10*time.Second)
	def(&cfg.BackoffMax, 300*time.Second)
	def(&cfg.BackoffReset, 10*time.Minute)
	if cfg.NetNS.Create == nil || cfg.NetNS.Delete == nil || cfg.NetNS.Path == nil {
		cfg.NetNS = defaultNetNS()
	}
	if cfg.ProbeDialer == nil {
		var d net.Dialer
		cfg.ProbeDialer = d.DialContext
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "kubelet", "node", cfg.NodeName)
	for _, dir := range []string{"pods", "logs"} {
		if err := os.MkdirAll(filepath.Join(cfg.StateDir, dir), 0o755); err != nil {
			return nil, fmt.Errorf("kubelet: state dir: %w", err)
		}
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("kubelet: %w", err)
	}
	return &Kubelet{
		cfg:      cfg,
		log:      log,
		client:   cfg.Client,
		rt:       cfg.Runtime,
		metrics:  m,
		netReady: make(chan struct{}),
		nodeKick: make(chan struct{}, 1),
		workers:  map[types.UID]*podWorker{},
	}, nil
}

// Run registers the node and runs pods until ctx ends. Containers keep
// running when it returns (a restarted kubelet adopts them).
func (k *Kubelet) Run(ctx context.Context) error {
	k.broadcaster = record.NewBroadcaster(record.WithContext(ctx))
	k.broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: k.client.CoreV1().Events("")})
	defer k.broadcaster.Shutdown()
	k.recorder = k.broadcaster.NewRecorder(scheme.Scheme, v1.EventSource{Component: "kubelet", Host: k.cfg.NodeName})

	if err := k.registerNode(ctx); err != nil {
		return err
	}
	k.recorder.Eventf(k.nodeRef(), v1.EventTypeNormal, "Starting", "Starting kubelet.")

	var bg sync.WaitGroup
	defer bg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	bg.Add(2)
	go func() { defer bg.Done(); k.leaseLoop(ctx) }()
	go func() { defer bg.Done(); k.nodeStatusLoop(ctx) }()

	podInformers := informers.NewSharedInformerFactoryWithOptions(k.client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", k.cfg.NodeName).String()
		}))
	nodeInformers := informers.NewSharedInformerFactoryWithOptions(k.client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", k.cfg.NodeName).String()
		}))
	podInformer := podInformers.Core().V1().Pods()
	k.podLister = podInformer.Lister()
	nodeInformer := nodeInformers.Core().V1().Nodes().Informer()
	if _, err := nodeInformer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { k.nodeChanged(ctx, obj) },
		UpdateFunc: func(_, obj any) { k.nodeChanged(ctx, obj) },
	}); err != nil {
		return fmt.Errorf("kubelet: node informer: %w", err)
	}
	// All nodes, for the host-gw routes to their podCIDRs.
	allNodeInformers := informers.NewSharedInformerFactory(k.client, 0)
	allNodes := allNodeInformers.Core().V1().Nodes()
	routesKick := make(chan struct{}, 1)
	kickRoutes := func(any) {
		select {
		case routesKick <- struct{}{}:
		default:
		}
	}
	if _, err := allNodes.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    kickRoutes,
		UpdateFunc: func(_, obj any) { kickRoutes(obj) },
		DeleteFunc: kickRoutes,
	}); err != nil {
		return fmt.Errorf("kubelet: node informer: %w", err)
	}
	podInformers.Start(ctx.Done())
	nodeInformers.Start(ctx.Done())
	allNodeInformers.Start(ctx.Done())
	defer podInformers.Shutdown()
	defer nodeInformers.Shutdown()
	defer allNodeInformers.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), podInformer.Informer().HasSynced, nodeInformer.HasSynced, allNodes.Informer().HasSynced) {
		return fmt.Errorf("kubelet: informers did not sync: %w", ctx.Err())
	}

	// Clean up what belongs to pods that are gone before workers start,
	// so a pod re-created with the same name never meets its old state.
	if err := k.cleanupOrphans(ctx); err != nil {
		k.log.Error("clean up pods deleted while the kubelet was down", "err", err)
	}

	if _, err := podInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { k.podChanged(ctx, obj, true) },
		UpdateFunc: func(_, obj any) { k.podChanged(ctx, obj, true) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			// Only an existing worker has something to clean up.
			k.podChanged(ctx, obj, false)
		},
	}); err != nil {
		return fmt.Errorf("kubelet: pod informer: %w", err)
	}
	bg.Add(1)
	go func() { defer bg.Done(); k.routesLoop(ctx, allNodes.Lister(), routesKick) }()
	k.log.Info("kubelet running")

	resync := time.NewTicker(k.cfg.ResyncInterval)
	defer resync.Stop()
	for {
		select {
		case <-ctx.Done():
			cancel()
			k.wg.Wait()
			k.log.Info("kubelet stopped")
			return nil
		case <-resync.C:
			k.kickAll()
		}
	}
}

// podChanged routes an informer event to the pod's worker, starting one
// for a pod it has not seen.
func (k *Kubelet) podChanged(ctx context.Context, obj any, create bool) {
	pod, ok := obj.(*v1.Pod)
	if !ok || pod.Spec.NodeName != k.cfg.NodeName {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if ctx.Err() != nil {
		return
	}
	w := k.workers[pod.UID]
	if w == nil {
		if !create {
			return
		}
		if isTerminal(pod) && pod.DeletionTimestamp == nil && !k.podDirExists(pod.UID) {
			// A finished pod this kubelet holds nothing for (e.g. it
			// finished before a restart and was cleaned up): nothing to do.
			return
		}
		w = newPodWorker(k, pod)
		k.workers[pod.UID] = w
		k.metrics.workers.Set(float64(len(k.workers)))
		k.wg.Add(1)
		go func() {
			defer k.wg.Done()
			w.run(ctx)
			k.mu.Lock()
			delete(k.workers, pod.UID)
			k.metrics.workers.Set(float64(len(k.workers)))
			k.mu.Unlock()
		}()
	}
	w.kickNow()
}

func (k *Kubelet) kickAll() {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, w := range k.workers {
		w.kickNow()
	}
}

// nodeChanged starts the pod network once the Node has a podCIDR.
func (k *Kubelet) nodeChanged(ctx context.Context, obj any) {
	node, ok := obj.(*v1.Node)
	if !ok || node.Spec.PodCIDR == "" {
		return
	}
	k.netMu.Lock()
	if k.network != nil || k.cfg.Network == nil {
		cur := k.podCIDR
		k.netMu.Unlock()
		if cur != "" && cur != node.Spec.PodCIDR {
			k.log.Warn("node podCIDR changed; keeping the one the network was built with", "old", cur, "new", node.Spec.PodCIDR)
		}
		return
	}
	n, err := k.cfg.Network(ctx, node.Spec.PodCIDR)
	if err != nil {
		k.netMu.Unlock()
		// The next node update (or the status loop's) retries.
		k.log.Error("start pod network", "podCIDR", node.Spec.PodCIDR, "err", err)
		return
	}
	k.network, k.podCIDR = n, node.Spec.PodCIDR
	close(k.netReady)
	k.netMu.Unlock()
	k.log.Info("pod network ready", "podCIDR", node.Spec.PodCIDR)
	k.kickNode()
	k.kickAll()
}

// net returns the pod network, or nil before the podCIDR is known.
func (k *Kubelet) net() Network {
	k.netMu.Lock()
	defer k.netMu.Unlock()
	return k.network
}

func (k *Kubelet) kickNode() {
	select {
	case k.nodeKick <- struct{}{}:
	default:
	}
}

func (k *Kubelet) nodeRef() *v1.ObjectReference {
	// The kubelet's own convention: the node's UID is its name in events.
	return &v1.ObjectReference{Kind: "Node", Name: k.cfg.NodeName, UID: types.UID(k.cfg.NodeName)}
}

// podDir is the pod's directory under the state dir.
func (k *Kubelet) podDir(uid types.UID) string {
	return filepath.Join(k.cfg.StateDir, "pods", string(uid))
}

func (k *Kubelet) podDirExists(uid types.UID) bool {
	_, err := os.Stat(k.podDir(uid))
	return err == nil
}

// podLogDir is /var/log/pods/<ns>_<name>_<uid> under the state dir.
func (k *Kubelet) podLogDir(ns, name string, uid types.UID) string {
	return filepath.Join(k.cfg.StateDir, "logs", fmt.Sprintf("%s_%s_%s", ns, name, uid))
}

// LogPath is where the container's log for one restart lives (what a
// kubelet log server would serve).
func (k *Kubelet) LogPath(pod *v1.Pod, container string, restartCount int) string {
	return filepath.Join(k.podLogDir(pod.Namespace, pod.Name, pod.UID), container, fmt.Sprintf("%d.log", restartCount))
}

// netnsName is the pod's network namespace name under /run/netns.
func netnsName(uid types.UID) string { return "synod-" + string(uid) }
