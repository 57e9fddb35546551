package namespace

import (
	"context"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"synod/components/controller"
	"synod/internal/hollow"
	"synod/internal/testcluster"
)

func TestMain(m *testing.M) { testcluster.Main(m) }

// fill creates a bit of everything in ns: a configmap, a secret, a
// service, a deployment with its replicaset and pods (two bound to the
// hollow node, one unscheduled).
func fill(t *testing.T, ctx context.Context, cs kubernetes.Interface, ns string) {
	t.Helper()
	if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, &v1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cm"}, Data: map[string]string{"a": "b"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Secrets(ns).Create(ctx, &v1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "s"}, StringData: map[string]string{"k": "v"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Services(ns).Create(ctx, &v1.Service{ObjectMeta: metav1.ObjectMeta{Name: "svc"},
		Spec: v1.ServiceSpec{Selector: map[string]string{"app": "web"}, Ports: []v1.ServicePort{{Port: 80}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	lbls := map[string]string{"app": "web"}
	tmpl := v1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: lbls}, Spec: v1.PodSpec{Containers: []v1.Container{{Name: "c", Image: "busybox"}}}}
	d, err := cs.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{Replicas: ptr.To(int32(3)), Selector: &metav1.LabelSelector{MatchLabels: lbls}, Template: tmpl}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rs, err := cs.AppsV1().ReplicaSets(ns).Create(ctx, &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: "web-1", Labels: lbls,
		OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(d, appsv1.SchemeGroupVersion.WithKind("Deployment"))}},
		Spec: appsv1.ReplicaSetSpec{Replicas: ptr.To(int32(3)), Selector: &metav1.LabelSelector{MatchLabels: lbls}, Template: tmpl}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, node := range []string{"ns-node", "ns-node", ""} {
		p := controller.PodFromTemplate(&rs.Spec.Template, rs, appsv1.SchemeGroupVersion.WithKind("ReplicaSet"))
		p.Spec.NodeName = node
		if _, err := cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// Wait until the bound pods run: deleting them then needs the kubelet.
	for {
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{FieldSelector: "status.phase=Running"})
		if err == nil && len(pods.Items) == 2 {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("bound pods not running: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func condition(ns *v1.Namespace, t v1.NamespaceConditionType) *v1.NamespaceCondition {
	for i := range ns.Status.Conditions {
		if ns.Status.Conditions[i].Type == t {
			return &ns.Status.Conditions[i]
		}
	}
	return nil
}

func TestNamespaceDeletion(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	cc := testcluster.NewControllerContext(t, c)
	testcluster.RunControllers(t, cc, New)
	cs := c.Client
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	kubelet, err := hollow.Start(ctx, cs, []hollow.NodeSpec{{Name: "ns-node"}}, hollow.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer kubelet.Close()
	nss := cs.CoreV1().Namespaces()

	t.Run("everything goes, then the namespace", func(t *testing.T) {
		if _, err := nss.Create(ctx, &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "doomed"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		fill(t, ctx, cs, "doomed")
		start := time.Now()
		if err := nss.Delete(ctx, "doomed", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := cs.CoreV1().ConfigMaps("doomed").Create(ctx, &v1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "late"}}, metav1.CreateOptions{}); !apierrors.IsForbidden(err) {
			t.Fatalf("create in a terminating namespace: %v", err)
		}
		for {
			_, err := nss.Get(ctx, "doomed", metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("namespace still there: %v", err)
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Logf("namespace with content deleted in %v", time.Since(start))
		// Gone with it, as a later namespace of the same name shows.
		if _, err := nss.Create(ctx, &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "doomed"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		for _, check := range []func() (int, error){
			func() (int, error) {
				l, err := cs.CoreV1().Pods("doomed").List(ctx, metav1.ListOptions{})
				return len(l.Items), err
			},
			func() (int, error) {
				l, err := cs.CoreV1().ConfigMaps("doomed").List(ctx, metav1.ListOptions{})
				return len(l.Items), err
			},
			func() (int, error) {
				l, err := cs.CoreV1().Secrets("doomed").List(ctx, metav1.ListOptions{})
				return len(l.Items), err
			},
			func() (int, error) {
				l, err := cs.CoreV1().Services("doomed").List(ctx, metav1.ListOptions{})
				return len(l.Items), err
			},
			func() (int, error) {
				l, err := cs.AppsV1().Deployments("doomed").List(ctx, metav1.ListOptions{})
				return len(l.Items), err
			},
			func() (int, error) {
				l, err := cs.AppsV1().ReplicaSets("doomed").List(ctx, metav1.ListOptions{})
				return len(l.Items), err
			},
		} {
			if n, err := check(); err != nil || n != 0 {
				t.Fatalf("left over: %d (%v)", n, err)
			}
		}
	})

	t.Run("finalizers hold it, with conditions", func(t *testing.T) {
		if _, err := nss.Create(ctx, &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "held"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := cs.CoreV1().ConfigMaps("held").Create(ctx, &v1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "keep",
			Finalizers: []string{"example.com/hold"}}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := cs.CoreV1().Secrets("held").Create(ctx, &v1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "s"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := nss.Delete(ctx, "held", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		var ns *v1.Namespace
		for {
			ns, err = nss.Get(ctx, "held", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if c := condition(ns, v1.NamespaceFinalizersRemaining); c != nil && c.Status == v1.ConditionTrue {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("conditions: %+v", ns.Status.Conditions)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if ns.Status.Phase != v1.NamespaceTerminating {
			t.Fatalf("phase %q", ns.Status.Phase)
		}
		want := map[v1.NamespaceConditionType][3]string{
			v1.NamespaceDeletionDiscoveryFailure: {"False", "ResourcesDiscovered", "All resources successfully discovered"},
			v1.NamespaceDeletionContentFailure:   {"False", "ContentDeleted", "All content successfully deleted, may be waiting on finalization"},
			v1.NamespaceContentRemaining:         {"True", "SomeResourcesRemain", "Some resources are remaining: configmaps. has 1 resource instances"},
			v1.NamespaceFinalizersRemaining:      {"True", "SomeFinalizersRemain", "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances"},
		}
		for typ, w := range want {
			c := condition(ns, typ)
			if c == nil || string(c.Status) != w[0] || c.Reason != w[1] || c.Message != w[2] {
				t.Fatalf("condition %s: %+v, want %v", typ, c, w)
			}
		}
		if _, err := cs.CoreV1().Secrets("held").Get(ctx, "s", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Fatalf("secret not deleted: %v", err)
		}
		// Whoever owns the finalizer lets go: the namespace finishes.
		if _, err := cs.CoreV1().ConfigMaps("held").Patch(ctx, "keep", types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		for {
			_, err := nss.Get(ctx, "held", metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("namespace still there: %v", err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})

	t.Run("empty namespace goes at once", func(t *testing.T) {
		if _, err := nss.Create(ctx, &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "empty"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := nss.Delete(ctx, "empty", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		for {
			_, err := nss.Get(ctx, "empty", metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				break
			}
			if time.Since(start) > 5*time.Second {
				t.Fatalf("empty namespace still there after %v: %v", time.Since(start), err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}
