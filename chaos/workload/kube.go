package workload

import (
	"context"
	"fmt"
	"math/rand"
	"sort"
	"strconv"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"synod/chaos/history"
)

// Resources and verbs of the Kubernetes-API clients' ops.
const (
	ResourceConfigMaps  = "configmaps"
	ResourceDeployments = "deployments"
	VerbCreate          = "create"
	VerbUpdate          = "update"
	VerbDelete          = "delete"
	VerbScale           = "scale"

	// RunLabel marks the workload's objects with the run's key prefix so
	// that the final read finds them and nothing else.
	RunLabel = "chaos.synod.io/run"
	// dataKey is the ConfigMap data entry the clients write.
	dataKey = "v"
	// configMapsPerClient is how many ConfigMaps each client owns.
	configMapsPerClient = 3
)

// kubeClients are the Kubernetes-API clients. Each owns its ConfigMaps and
// one Deployment, so its ops on an object are sequential and the check can
// tell which state each acknowledged op left.
type kubeClients struct {
	cfg     Config
	w       *Workload
	servers []string
	clients []kubernetes.Interface // one per server
	runID   string

	mu            sync.Mutex
	hist          []history.KubeOp
	nOps, nOK     int64
	interval      time.Duration
	deploymentsOK bool
}

func newKubeClients(cfg Config, w *Workload) (*kubeClients, error) {
	base, err := clientcmd.BuildConfigFromFlags("", cfg.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("workload: kubeconfig: %w", err)
	}
	base.QPS, base.Burst = -1, 0
	base.Timeout = 2 * cfg.RequestTimeout
	servers := cfg.KubeServers
	if len(servers) == 0 {
		servers = []string{base.Host}
	}
	k := &kubeClients{cfg: cfg, w: w, servers: servers, runID: runID(cfg.KeyPrefix),
		interval: time.Duration(float64(time.Second) * float64(cfg.KubeClients) / cfg.KubeRate)}
	for _, s := range servers {
		c := rest.CopyConfig(base)
		c.Host = s
		cs, err := kubernetes.NewForConfig(c)
		if err != nil {
			return nil, fmt.Errorf("workload: kube client for %s: %w", s, err)
		}
		k.clients = append(k.clients, cs)
	}
	return k, nil
}

// runID turns the key prefix into a label value.
func runID(prefix string) string {
	out := make([]byte, 0, len(prefix))
	for i := 0; i < len(prefix); i++ {
		if b := prefix[i]; b >= '0' && b <= '9' || b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' {
			out = append(out, b)
		}
	}
	if len(out) > 63 {
		out = out[len(out)-63:]
	}
	return string(out)
}

func (k *kubeClients) start(ctx context.Context, wg *sync.WaitGroup) {
	for i := 0; i < k.cfg.KubeClients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k.run(ctx, i, rand.New(rand.NewSource(k.cfg.Seed*1000+500+int64(i))))
		}()
	}
}

func (k *kubeClients) counts() (int64, int64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.nOps, k.nOK
}

func (k *kubeClients) ops() []history.KubeOp {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]history.KubeOp(nil), k.hist...)
}

// objState is what a client knows of one of its objects.
type objState int

const (
	stateUnknown objState = iota // after an op with an unknown outcome
	stateAbsent
	statePresent
)

func (k *kubeClients) run(ctx context.Context, id int, rng *rand.Rand) {
	cs := k.clients[id%len(k.clients)]
	ns := k.cfg.KubeNamespace
	cms := make([]string, configMapsPerClient)
	state := map[string]objState{}
	for j := range cms {
		cms[j] = fmt.Sprintf("chaos-%s-cm-%d-%d", k.runID, id, j)
		state[cms[j]] = stateAbsent
	}
	deploy := fmt.Sprintf("chaos-%s-deploy-%d", k.runID, id)
	state[deploy] = stateAbsent
	labels := map[string]string{RunLabel: k.runID}
	next := time.Now()
	for seq := 0; ; seq++ {
		next = next.Add(k.interval)
		if d := time.Until(next); d > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(d):
			}
		} else {
			next = time.Now()
		}
		if ctx.Err() != nil {
			return
		}
		rctx, cancel := context.WithTimeout(ctx, 2*k.cfg.RequestTimeout)
		name := cms[rng.Intn(len(cms))]
		if rng.Intn(100) < 20 {
			name = deploy
		}
		// After an unknown outcome, learn the object's state first (not
		// recorded: reads prove nothing here).
		if state[name] == stateUnknown {
			var err error
			if name == deploy {
				_, err = cs.AppsV1().Deployments(ns).Get(rctx, name, metav1.GetOptions{})
			} else {
				_, err = cs.CoreV1().ConfigMaps(ns).Get(rctx, name, metav1.GetOptions{})
			}
			switch {
			case err == nil:
				state[name] = statePresent
			case apierrors.IsNotFound(err):
				state[name] = stateAbsent
			}
			cancel()
			continue
		}
		op := history.KubeOp{Client: id, Name: name, Resource: ResourceConfigMaps}
		var rv string
		var err error
		if name == deploy {
			op.Resource = ResourceDeployments
			replicas := int32(rng.Intn(4))
			op.Data = strconv.Itoa(int(replicas))
			op.Call = k.w.now()
			if state[name] == stateAbsent {
				op.Verb = VerbCreate
				var d *appsv1.Deployment
				if d, err = cs.AppsV1().Deployments(ns).Create(rctx, newDeployment(name, labels, replicas), metav1.CreateOptions{}); err == nil {
					rv = d.ResourceVersion
				}
			} else {
				op.Verb = VerbScale
				var s *autoscalingv1.Scale
				sc := &autoscalingv1.Scale{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: autoscalingv1.ScaleSpec{Replicas: replicas}}
				if s, err = cs.AppsV1().Deployments(ns).UpdateScale(rctx, name, sc, metav1.UpdateOptions{}); err == nil {
					rv = s.ResourceVersion
				}
			}
		} else {
			op.Data = fmt.Sprintf("%d.%d", id, seq)
			cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
				Data: map[string]string{dataKey: op.Data}}
			op.Call = k.w.now()
			switch {
			case state[name] == stateAbsent:
				op.Verb = VerbCreate
				var out *corev1.ConfigMap
				if out, err = cs.CoreV1().ConfigMaps(ns).Create(rctx, cm, metav1.CreateOptions{}); err == nil {
					rv = out.ResourceVersion
				}
			case rng.Intn(100) < 75:
				// Unconditional update (no resourceVersion): the client
				// owns the object, so last writer wins is what it wants.
				op.Verb = VerbUpdate
				var out *corev1.ConfigMap
				if out, err = cs.CoreV1().ConfigMaps(ns).Update(rctx, cm, metav1.UpdateOptions{}); err == nil {
					rv = out.ResourceVersion
				}
			default:
				op.Verb, op.Data = VerbDelete, ""
				err = cs.CoreV1().ConfigMaps(ns).Delete(rctx, name, metav1.DeleteOptions{})
			}
		}
		cancel()
		t := k.w.now()
		switch {
		case err == nil:
			op.OK, op.Return, op.ResourceVersion = true, t, rv
			if op.Verb == VerbDelete {
				state[name] = stateAbsent
			} else {
				state[name] = statePresent
			}
		case definite(err):
			// The apiserver refused it: nothing was written.
			op.Return, op.Err = t, err.Error()
			switch {
			case apierrors.IsNotFound(err):
				state[name] = stateAbsent
			case apierrors.IsAlreadyExists(err):
				state[name] = statePresent
			default:
				state[name] = stateUnknown
			}
		default:
			op.Unknown, op.Return, op.Err = true, history.Unknown, err.Error()
			state[name] = stateUnknown
		}
		k.mu.Lock()
		k.hist = append(k.hist, op)
		k.nOps++
		if op.OK {
			k.nOK++
		}
		k.mu.Unlock()
	}
}

// definite reports whether err is the apiserver refusing an op (so it
// certainly had no effect), as opposed to a timeout or a lost connection.
func definite(err error) bool {
	return apierrors.IsNotFound(err) || apierrors.IsAlreadyExists(err) || apierrors.IsConflict(err) ||
		apierrors.IsInvalid(err) || apierrors.IsBadRequest(err) || apierrors.IsForbidden(err) ||
		apierrors.IsUnauthorized(err) || apierrors.IsMethodNotSupported(err)
}

func newDeployment(name string, labels map[string]string, replicas int32) *appsv1.Deployment {
	sel := map[string]string{"app": name}
	podLabels := map[string]string{"app": name}
	for k, v := range labels {
		podLabels[k] = v
	}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: sel},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: podLabels},
				// No workers: the pods stay Pending, which is fine; the
				// deployment's replica count is what the check follows.
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "pause", Image: "registry.k8s.io/pause:3.10"}}},
			},
		},
	}
}

// finalState lists the workload's objects on every apiserver, retrying each
// until it answers or the deadline passes.
func (k *kubeClients) finalState(deadline time.Time) []history.KubeFinal {
	var out []history.KubeFinal
	sel := metav1.ListOptions{LabelSelector: RunLabel + "=" + k.runID}
	for i, cs := range k.clients {
		f := history.KubeFinal{Server: k.servers[i]}
		for {
			f.Objects, f.Err = nil, ""
			ctx, cancel := context.WithTimeout(context.Background(), 2*k.cfg.RequestTimeout)
			cms, err := cs.CoreV1().ConfigMaps(k.cfg.KubeNamespace).List(ctx, sel)
			var ds *appsv1.DeploymentList
			if err == nil {
				ds, err = cs.AppsV1().Deployments(k.cfg.KubeNamespace).List(ctx, sel)
			}
			cancel()
			if err == nil {
				for _, cm := range cms.Items {
					f.Objects = append(f.Objects, history.KubeObject{Server: f.Server, Resource: ResourceConfigMaps, Name: cm.Name, Data: cm.Data[dataKey]})
				}
				for _, d := range ds.Items {
					r := ""
					if d.Spec.Replicas != nil {
						r = strconv.Itoa(int(*d.Spec.Replicas))
					}
					f.Objects = append(f.Objects, history.KubeObject{Server: f.Server, Resource: ResourceDeployments, Name: d.Name, Data: r})
				}
				sort.Slice(f.Objects, func(a, b int) bool { return f.Objects[a].Name < f.Objects[b].Name })
				break
			}
			f.Err = err.Error()
			if time.Now().After(deadline) {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		out = append(out, f)
	}
	return out
}
