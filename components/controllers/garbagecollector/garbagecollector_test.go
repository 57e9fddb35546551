package garbagecollector

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"synod/components/controller"
	"synod/internal/hollow"
	"synod/internal/testcluster"
)

func TestMain(m *testing.M) { testcluster.Main(m) }

// chain is a deployment → replicaset → pods owner chain, made by hand as
// the deployment and replicaset controllers would make it.
type chain struct {
	d    *appsv1.Deployment
	rs   *appsv1.ReplicaSet
	pods []*v1.Pod
}

func makeChain(t *testing.T, ctx context.Context, cs kubernetes.Interface, ns, name, nodeName string, pods int) chain {
	t.Helper()
	lbls := map[string]string{"app": name}
	tmpl := v1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: lbls},
		Spec: v1.PodSpec{Containers: []v1.Container{{Name: "c", Image: "busybox"}}}}
	d, err := cs.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{Replicas: ptr.To(int32(pods)), Selector: &metav1.LabelSelector{MatchLabels: lbls}, Template: tmpl}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rs, err := cs.AppsV1().ReplicaSets(ns).Create(ctx, &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: name + "-abc", Labels: lbls,
		OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(d, appsv1.SchemeGroupVersion.WithKind("Deployment"))}},
		Spec: appsv1.ReplicaSetSpec{Replicas: ptr.To(int32(pods)), Selector: &metav1.LabelSelector{MatchLabels: lbls}, Template: tmpl}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := chain{d: d, rs: rs}
	for i := 0; i < pods; i++ {
		p := controller.PodFromTemplate(&rs.Spec.Template, rs, appsv1.SchemeGroupVersion.WithKind("ReplicaSet"))
		p.Spec.NodeName = nodeName
		created, err := cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		c.pods = append(c.pods, created)
	}
	return c
}

// waitGone polls until get reports NotFound.
func waitGone(t *testing.T, ctx context.Context, what string, get func() error) {
	t.Helper()
	for {
		err := get()
		if apierrors.IsNotFound(err) {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("%s still there (%v)", what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func podsGone(t *testing.T, ctx context.Context, cs kubernetes.Interface, c chain) {
	t.Helper()
	for _, p := range c.pods {
		waitGone(t, ctx, "pod "+p.Name, func() error {
			_, err := cs.CoreV1().Pods(p.Namespace).Get(ctx, p.Name, metav1.GetOptions{})
			return err
		})
	}
}

func TestGarbageCollector(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	cc := testcluster.NewControllerContext(t, c)
	testcluster.RunControllers(t, cc, New)
	cs := c.Client
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	kubelet, err := hollow.Start(ctx, cs, []hollow.NodeSpec{{Name: "gc-node"}}, hollow.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer kubelet.Close()
	const ns = "default"
	deployments := cs.AppsV1().Deployments(ns)

	t.Run("background", func(t *testing.T) {
		ch := makeChain(t, ctx, cs, ns, "bg", "gc-node", 3)
		if err := deployments.Delete(ctx, "bg", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		waitGone(t, ctx, "replicaset", func() error {
			_, err := cs.AppsV1().ReplicaSets(ns).Get(ctx, ch.rs.Name, metav1.GetOptions{})
			return err
		})
		podsGone(t, ctx, cs, ch)
	})

	t.Run("orphan", func(t *testing.T) {
		ch := makeChain(t, ctx, cs, ns, "orph", "gc-node", 2)
		if err := deployments.Delete(ctx, "orph", metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationOrphan)}); err != nil {
			t.Fatal(err)
		}
		waitGone(t, ctx, "deployment", func() error {
			_, err := deployments.Get(ctx, "orph", metav1.GetOptions{})
			return err
		})
		rs, err := cs.AppsV1().ReplicaSets(ns).Get(ctx, ch.rs.Name, metav1.GetOptions{})
		if err != nil || len(rs.OwnerReferences) != 0 {
			t.Fatalf("orphaned replicaset: %v, ownerReferences %v", err, rs.OwnerReferences)
		}
		for _, p := range ch.pods {
			got, err := cs.CoreV1().Pods(ns).Get(ctx, p.Name, metav1.GetOptions{})
			if err != nil || len(got.OwnerReferences) != 1 || got.OwnerReferences[0].UID != rs.UID {
				t.Fatalf("pod of the orphaned replicaset: %v %v", err, got.OwnerReferences)
			}
		}
		// The orphans stay: deleting their new top collects them.
		if err := cs.AppsV1().ReplicaSets(ns).Delete(ctx, rs.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		podsGone(t, ctx, cs, ch)
	})

	t.Run("foreground", func(t *testing.T) {
		// Watch deletions to check their order by revision.
		list, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ch := makeChain(t, ctx, cs, ns, "fg", "gc-node", 3)
		deletedAt := map[types.UID]string{}
		var mu sync.Mutex
		watchDeletes := func(w watch.Interface, err error) {
			if err != nil {
				t.Fatal(err)
			}
			go func() {
				for ev := range w.ResultChan() {
					if ev.Type == watch.Deleted {
						m := ev.Object.(metav1.Object)
						mu.Lock()
						deletedAt[m.GetUID()] = m.GetResourceVersion()
						mu.Unlock()
					}
				}
			}()
			t.Cleanup(w.Stop)
		}
		watchDeletes(cs.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion}))
		watchDeletes(cs.AppsV1().ReplicaSets(ns).Watch(ctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion}))
		watchDeletes(cs.AppsV1().Deployments(ns).Watch(ctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion}))

		if err := deployments.Delete(ctx, "fg", metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationForeground)}); err != nil {
			t.Fatal(err)
		}
		d, err := deployments.Get(ctx, "fg", metav1.GetOptions{})
		if err != nil || d.DeletionTimestamp == nil {
			t.Fatalf("foreground deletion must keep the owner until its dependents are gone: %v %+v", err, d)
		}
		waitGone(t, ctx, "deployment", func() error {
			_, err := deployments.Get(ctx, "fg", metav1.GetOptions{})
			return err
		})
		podsGone(t, ctx, cs, ch)
		for {
			mu.Lock()
			n := len(deletedAt)
			mu.Unlock()
			if n == 5 {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("saw %d deletions, want 5", n)
			}
			time.Sleep(10 * time.Millisecond)
		}
		mu.Lock()
		defer mu.Unlock()
		rev := func(uid types.UID) int {
			var n int
			fmt.Sscan(deletedAt[uid], &n)
			return n
		}
		for _, p := range ch.pods {
			if rev(p.UID) >= rev(ch.rs.UID) {
				t.Fatalf("pod %s deleted at %d, after its replicaset (%d)", p.Name, rev(p.UID), rev(ch.rs.UID))
			}
		}
		if rev(ch.rs.UID) >= rev(ch.d.UID) {
			t.Fatalf("replicaset deleted at %d, after its deployment (%d)", rev(ch.rs.UID), rev(ch.d.UID))
		}
	})

	t.Run("dangling", func(t *testing.T) {
		cms := cs.CoreV1().ConfigMaps(ns)
		owned := func(name string, refs ...metav1.OwnerReference) {
			if _, err := cms.Create(ctx, &v1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, OwnerReferences: refs}}, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		real, err := deployments.Create(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "same"},
			Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"a": "b"}},
				Template: v1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"a": "b"}},
					Spec: v1.PodSpec{Containers: []v1.Container{{Name: "c", Image: "x"}}}}}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ref := func(name string, uid types.UID) metav1.OwnerReference {
			return metav1.OwnerReference{APIVersion: "apps/v1", Kind: "Deployment", Name: name, UID: uid}
		}
		// An owner that never existed, one with the right name but
		// another UID, and the real one.
		owned("never", ref("ghost", uuid.NewUUID()))
		owned("wrong-uid", ref("same", uuid.NewUUID()))
		owned("right-uid", ref("same", real.UID))
		// Two owners, one of them gone: the reference to it goes, the
		// object stays.
		owned("two-owners", ref("same", real.UID), ref("ghost2", uuid.NewUUID()))
		for _, name := range []string{"never", "wrong-uid"} {
			waitGone(t, ctx, "configmap "+name, func() error {
				_, err := cms.Get(ctx, name, metav1.GetOptions{})
				return err
			})
		}
		for {
			cm, err := cms.Get(ctx, "two-owners", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if len(cm.OwnerReferences) == 1 && cm.OwnerReferences[0].UID == real.UID {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("dangling reference not removed: %v", cm.OwnerReferences)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if _, err := cms.Get(ctx, "right-uid", metav1.GetOptions{}); err != nil {
			t.Fatalf("object with a live owner collected: %v", err)
		}
		// Deleting the real owner collects the rest.
		if err := deployments.Delete(ctx, "same", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"right-uid", "two-owners"} {
			waitGone(t, ctx, "configmap "+name, func() error {
				_, err := cms.Get(ctx, name, metav1.GetOptions{})
				return err
			})
		}
	})

	t.Run("cluster-scoped owner", func(t *testing.T) {
		owner, err := cs.RbacV1().ClusterRoles().Create(ctx, &rbacClusterRole, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cs.CoreV1().Secrets(ns).Create(ctx, &v1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "owned-by-role",
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRole", Name: owner.Name, UID: owner.UID}}}},
			metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := cs.RbacV1().ClusterRoles().Delete(ctx, owner.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		waitGone(t, ctx, "secret", func() error {
			_, err := cs.CoreV1().Secrets(ns).Get(ctx, "owned-by-role", metav1.GetOptions{})
			return err
		})
	})
}

var rbacClusterRole = rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "gc-test-owner"}}
