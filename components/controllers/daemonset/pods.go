package daemonset

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"sort"

	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	corev1helpers "k8s.io/component-helpers/scheduling/corev1"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"

	"synod/components/controller"
)

// hashLabel is the label Kubernetes puts on daemon pods to tell template
// revisions apart (apps/v1 DefaultDaemonSetUniqueLabelKey).
const hashLabel = appsv1.DefaultDaemonSetUniqueLabelKey

// templateHash names the template's revision, as Kubernetes' ComputeHash
// does (fnv32a over the template and collisionCount, safe-encoded).
func templateHash(ds *appsv1.DaemonSet) string {
	h := fnv.New32a()
	data, _ := json.Marshal(ds.Spec.Template) // a plain struct always marshals
	h.Write(data)
	if ds.Status.CollisionCount != nil {
		fmt.Fprintf(h, "/%d", *ds.Status.CollisionCount)
	}
	return rand.SafeEncodeString(fmt.Sprint(h.Sum32()))
}

// daemonTolerations are what Kubernetes' AddOrUpdateDaemonPodTolerations
// adds: daemons stay through node trouble and ignore cordons.
func daemonTolerations(spec *v1.PodSpec) {
	add := []v1.Toleration{
		{Key: v1.TaintNodeNotReady, Operator: v1.TolerationOpExists, Effect: v1.TaintEffectNoExecute},
		{Key: v1.TaintNodeUnreachable, Operator: v1.TolerationOpExists, Effect: v1.TaintEffectNoExecute},
		{Key: v1.TaintNodeDiskPressure, Operator: v1.TolerationOpExists, Effect: v1.TaintEffectNoSchedule},
		{Key: v1.TaintNodeMemoryPressure, Operator: v1.TolerationOpExists, Effect: v1.TaintEffectNoSchedule},
		{Key: v1.TaintNodePIDPressure, Operator: v1.TolerationOpExists, Effect: v1.TaintEffectNoSchedule},
		{Key: v1.TaintNodeUnschedulable, Operator: v1.TolerationOpExists, Effect: v1.TaintEffectNoSchedule},
	}
	if spec.HostNetwork {
		add = append(add, v1.Toleration{Key: v1.TaintNodeNetworkUnavailable, Operator: v1.TolerationOpExists, Effect: v1.TaintEffectNoSchedule})
	}
	for _, t := range add {
		replaced := false
		for i := range spec.Tolerations {
			if spec.Tolerations[i].MatchToleration(&t) {
				spec.Tolerations[i], replaced = t, true
				break
			}
		}
		if !replaced {
			spec.Tolerations = append(spec.Tolerations, t)
		}
	}
}

// templatePod is the DaemonSet's pod for node before placement: the
// template plus daemon tolerations. Predicates are judged on it.
func templatePod(ds *appsv1.DaemonSet) *v1.Pod {
	tmpl := ds.Spec.Template.DeepCopy()
	daemonTolerations(&tmpl.Spec)
	pod := controller.PodFromTemplate(tmpl, ds, appsv1.SchemeGroupVersion.WithKind("DaemonSet"))
	return pod
}

// newPod is the pod to create for node: placed there through a required
// node affinity on metadata.name that the scheduler honours.
func newPod(ds *appsv1.DaemonSet, node, hash string) *v1.Pod {
	pod := templatePod(ds)
	if pod.Labels == nil {
		pod.Labels = map[string]string{}
	}
	pod.Labels[hashLabel] = hash
	pod.Spec.Affinity = nodeNameAffinity(pod.Spec.Affinity, node)
	return pod
}

// nodeNameAffinity is Kubernetes' ReplaceDaemonSetPodNodeNameNodeAffinity:
// the required terms become one term selecting node by name; preferred
// terms and pod (anti-)affinity stay.
func nodeNameAffinity(a *v1.Affinity, node string) *v1.Affinity {
	term := v1.NodeSelectorTerm{MatchFields: []v1.NodeSelectorRequirement{{
		Key: metav1.ObjectNameField, Operator: v1.NodeSelectorOpIn, Values: []string{node}}}}
	if a == nil {
		a = &v1.Affinity{}
	}
	if a.NodeAffinity == nil {
		a.NodeAffinity = &v1.NodeAffinity{}
	}
	a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution = &v1.NodeSelector{NodeSelectorTerms: []v1.NodeSelectorTerm{term}}
	return a
}

// targetNode is where a daemon pod runs or is meant to: its nodeName, or
// the node its metadata.name affinity selects.
func targetNode(p *v1.Pod) string {
	if p.Spec.NodeName != "" {
		return p.Spec.NodeName
	}
	a := p.Spec.Affinity
	if a == nil || a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return ""
	}
	terms := a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	if len(terms) != 1 {
		return ""
	}
	for _, f := range terms[0].MatchFields {
		if f.Key == metav1.ObjectNameField && f.Operator == v1.NodeSelectorOpIn && len(f.Values) == 1 {
			return f.Values[0]
		}
	}
	return ""
}

// shouldRun is Kubernetes' NodeShouldRunDaemonPod: whether a new daemon
// pod belongs on node, and whether an existing one may stay.
func shouldRun(pod *v1.Pod, node *v1.Node) (run, keep bool) {
	if pod.Spec.NodeName != "" && pod.Spec.NodeName != node.Name {
		return false, false
	}
	if ok, err := nodeaffinity.GetRequiredNodeAffinity(pod).Match(node); err != nil || !ok {
		return false, false
	}
	_, untolerated := corev1helpers.FindMatchingUntoleratedTaint(logr.Discard(), node.Spec.Taints, pod.Spec.Tolerations, func(t *v1.Taint) bool {
		return t.Effect == v1.TaintEffectNoExecute || t.Effect == v1.TaintEffectNoSchedule
	}, false)
	_, evicting := corev1helpers.FindMatchingUntoleratedTaint(logr.Discard(), node.Spec.Taints, pod.Spec.Tolerations, func(t *v1.Taint) bool {
		return t.Effect == v1.TaintEffectNoExecute
	}, false)
	return !untolerated, !evicting
}

// updatedPods splits the live pods of one node into the up-to-date one and
// the old one; ok is false when there are more of either (manage cleans up
// first).
func updatedPods(pods []*v1.Pod, hash string) (newPod, oldPod *v1.Pod, ok bool) {
	for _, p := range pods {
		if p.DeletionTimestamp != nil {
			continue
		}
		if p.Labels[hashLabel] == hash {
			if newPod != nil {
				return nil, nil, false
			}
			newPod = p
		} else {
			if oldPod != nil {
				return nil, nil, false
			}
			oldPod = p
		}
	}
	return newPod, oldPod, true
}

// oldestFirst sorts pods by creation (then name, for a stable order).
func oldestFirst(pods []*v1.Pod) {
	sort.SliceStable(pods, func(i, j int) bool {
		a, b := pods[i], pods[j]
		if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
			return a.CreationTimestamp.Before(&b.CreationTimestamp)
		}
		return a.Name < b.Name
	})
}
