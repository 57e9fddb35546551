package scheduler

// The filters and scores of kube-scheduler's default profile that matter
// without volumes and inter-pod affinity, in its order and with its reasons,
// normalisation and weights (pkg/scheduler/framework/plugins and
// apis/config/v1/default_plugins.go).

import (
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/go-logr/logr"
	v1 "k8s.io/api/core/v1"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"
)

// Filter reasons, worded as kube-scheduler words them: they are counted per
// node into the FailedScheduling message.
const (
	ReasonUnschedulable    = "node(s) were unschedulable"
	ReasonNodeName         = "node(s) didn't match the requested node name"
	ReasonUntoleratedTaint = "node(s) had untolerated taint(s)"
	ReasonNodeAffinity     = "node(s) didn't match Pod's node affinity/selector"
	ReasonNodePorts        = "node(s) didn't have free ports for the requested pod ports"
	ReasonTooManyPods      = "Too many pods"
	ReasonInsufficientCPU  = "Insufficient cpu"
	ReasonInsufficientMem  = "Insufficient memory"
	ReasonInsufficientEph  = "Insufficient ephemeral-storage"

	// Preemption's per-node verdicts (DefaultPreemption). This scheduler
	// does not preempt: a node where preemption could help is reported as
	// having no victims, which is what Kubernetes says when no pod of
	// lower priority runs there.
	reasonPreemptionNotHelpful = "Preemption is not helpful for scheduling"
	reasonNoVictims            = "No preemption victims found for incoming pod"

	// MessageNoNodes is the FailedScheduling message with no node at all.
	MessageNoNodes = "no nodes available to schedule pods"
)

// Score weights of the default profile.
const (
	maxNodeScore          = 100
	weightTaintToleration = 3
	weightNodeAffinity    = 2
	weightSpread          = 2 // PodTopologySpread's weight, for owner spreading
	weightFit             = 1
	weightBalanced        = 1
)

// discard is the logger the taint helpers of k8s.io/api want.
var discard = logr.Discard()

// status is why one node failed a pod: the reasons of the first filter that
// rejected it, and whether preemption could never help there
// (UnschedulableAndUnresolvable).
type status struct {
	reasons      []string
	unresolvable bool
}

// Shared statuses for the single-reason filters (read-only).
var (
	statusUnschedulable = &status{reasons: []string{ReasonUnschedulable}, unresolvable: true}
	statusNodeName      = &status{reasons: []string{ReasonNodeName}, unresolvable: true}
	statusTaint         = &status{reasons: []string{ReasonUntoleratedTaint}, unresolvable: true}
	statusAffinity      = &status{reasons: []string{ReasonNodeAffinity}, unresolvable: true}
	statusPorts         = &status{reasons: []string{ReasonNodePorts}}
)

// podSchedInfo is a pod prepared for one scheduling cycle (PreFilter).
type podSchedInfo struct {
	*podInfo
	required               nodeaffinity.RequiredNodeAffinity
	preferred              *nodeaffinity.PreferredSchedulingTerms // nil without preferred terms
	tolerateUnschedulable  bool
	preferNoScheduleTolers []v1.Toleration
	preemptionPolicyNever  bool
}

func newPodSchedInfo(pod *v1.Pod) *podSchedInfo {
	p := &podSchedInfo{podInfo: newPodInfo(pod), required: nodeaffinity.GetRequiredNodeAffinity(pod)}
	if a := pod.Spec.Affinity; a != nil && a.NodeAffinity != nil && len(a.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution) > 0 {
		// Invalid terms were rejected by validation; an error leaves the
		// preference out rather than failing the pod.
		if terms, err := nodeaffinity.NewPreferredSchedulingTerms(a.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution); err == nil {
			p.preferred = terms
		}
	}
	unschedulable := v1.Taint{Key: taintUnschedulable, Effect: v1.TaintEffectNoSchedule}
	for i := range pod.Spec.Tolerations {
		t := &pod.Spec.Tolerations[i]
		if t.ToleratesTaint(discard, &unschedulable, false) {
			p.tolerateUnschedulable = true
		}
		if t.Effect == "" || t.Effect == v1.TaintEffectPreferNoSchedule {
			p.preferNoScheduleTolers = append(p.preferNoScheduleTolers, *t)
		}
	}
	p.preemptionPolicyNever = pod.Spec.PreemptionPolicy != nil && *pod.Spec.PreemptionPolicy == v1.PreemptNever
	return p
}

// filter runs the filters in kube-scheduler's order and returns nil if the
// pod fits the node, or the first failing filter's status.
func filter(p *podSchedInfo, ni *nodeInfo) *status {
	node := ni.node
	// NodeUnschedulable
	if node.Spec.Unschedulable && !p.tolerateUnschedulable {
		return statusUnschedulable
	}
	// NodeName
	if p.pod.Spec.NodeName != "" && p.pod.Spec.NodeName != node.Name {
		return statusNodeName
	}
	// TaintToleration (NoSchedule and NoExecute), including the condition
	// taint of a node that is not Ready.
	for i := range ni.taints {
		t := &ni.taints[i]
		if t.Effect != v1.TaintEffectNoSchedule && t.Effect != v1.TaintEffectNoExecute {
			continue
		}
		if !tolerates(p.pod.Spec.Tolerations, t) {
			return statusTaint
		}
	}
	// NodeAffinity: nodeSelector and required node affinity.
	if ok, _ := p.required.Match(node); !ok {
		return statusAffinity
	}
	// NodePorts
	for _, hp := range p.ports {
		if ni.portConflict(hp) {
			return statusPorts
		}
	}
	// NodeResourcesFit
	return fit(p.podInfo, ni)
}

func tolerates(tolerations []v1.Toleration, taint *v1.Taint) bool {
	for i := range tolerations {
		if tolerations[i].ToleratesTaint(discard, taint, false) {
			return true
		}
	}
	return false
}

// fit is NodeResourcesFit's filter: the pod count, then each requested
// resource against what is left of the node's allocatable. A request larger
// than the whole node is unresolvable (preemption cannot help).
func fit(p *podInfo, ni *nodeInfo) *status {
	var st *status
	fail := func(reason string, unresolvable bool) {
		if st == nil {
			st = &status{}
		}
		st.reasons = append(st.reasons, reason)
		st.unresolvable = st.unresolvable || unresolvable
	}
	if len(ni.pods)+1 > ni.allowedPods {
		fail(ReasonTooManyPods, false)
	}
	r, alloc, used := p.req, ni.allocatable, ni.requested
	if r.milliCPU > 0 && r.milliCPU > alloc.milliCPU-used.milliCPU {
		fail(ReasonInsufficientCPU, r.milliCPU > alloc.milliCPU)
	}
	if r.memory > 0 && r.memory > alloc.memory-used.memory {
		fail(ReasonInsufficientMem, r.memory > alloc.memory)
	}
	if r.ephemeral > 0 && r.ephemeral > alloc.ephemeral-used.ephemeral {
		fail(ReasonInsufficientEph, r.ephemeral > alloc.ephemeral)
	}
	return st
}

// rawScores are one node's scores before normalisation across nodes.
type rawScores struct {
	fit, balanced int64 // already 0..100
	affinity      int64 // sum of the weights of matching preferred terms
	taints        int64 // intolerable PreferNoSchedule taints
	owners        int64 // pods of the same controller already there
}

func score(p *podSchedInfo, ni *nodeInfo) rawScores {
	var s rawScores
	// NodeResourcesFit, LeastAllocated strategy over cpu and memory
	// (weight 1 each), with non-zero requests.
	req := ni.nonZeroRequested
	req.add(p.nonZero)
	s.fit = (leastRequested(req.milliCPU, ni.allocatable.milliCPU) + leastRequested(req.memory, ni.allocatable.memory)) / 2
	// NodeResourcesBalancedAllocation, with actual requests; skipped
	// (scores 0 everywhere) for a pod that requests nothing.
	if p.req.milliCPU > 0 || p.req.memory > 0 {
		used := ni.requested
		used.add(p.req)
		s.balanced = balanced(used, ni.allocatable)
	}
	if p.preferred != nil {
		s.affinity = p.preferred.Score(ni.node)
	}
	for i := range ni.taints {
		t := &ni.taints[i]
		if t.Effect == v1.TaintEffectPreferNoSchedule && !tolerates(p.preferNoScheduleTolers, t) {
			s.taints++
		}
	}
	if p.owner != "" {
		s.owners = int64(ni.owners[p.owner])
	}
	return s
}

func leastRequested(requested, capacity int64) int64 {
	if capacity == 0 || requested > capacity {
		return 0
	}
	return (capacity - requested) * maxNodeScore / capacity
}

// balanced favours nodes whose cpu and memory fractions stay close.
func balanced(used, alloc resources) int64 {
	var fractions [2]float64
	n := 0
	for _, rc := range [2][2]int64{{used.milliCPU, alloc.milliCPU}, {used.memory, alloc.memory}} {
		if rc[1] == 0 {
			continue
		}
		fractions[n] = math.Min(float64(rc[0])/float64(rc[1]), 1)
		n++
	}
	std := 0.0
	if n == 2 {
		std = math.Abs((fractions[0] - fractions[1]) / 2)
	}
	return int64((1 - std) * maxNodeScore)
}

// totals normalises the raw scores of the feasible nodes as the plugins'
// NormalizeScore do and returns each node's weighted sum in out.
func totals(raw []rawScores, out []int64) {
	var maxAff, maxTaints, maxOwners int64
	for i := range raw {
		maxAff = max(maxAff, raw[i].affinity)
		maxTaints = max(maxTaints, raw[i].taints)
		maxOwners = max(maxOwners, raw[i].owners)
	}
	for i := range raw {
		r := &raw[i]
		aff := int64(0)
		if maxAff > 0 {
			aff = r.affinity * maxNodeScore / maxAff
		}
		taints := int64(maxNodeScore)
		if maxTaints > 0 {
			taints = maxNodeScore - r.taints*maxNodeScore/maxTaints
		}
		spread := int64(maxNodeScore)
		if maxOwners > 0 {
			spread = maxNodeScore * (maxOwners - r.owners) / maxOwners
		}
		out[i] = r.fit*weightFit + r.balanced*weightBalanced + aff*weightNodeAffinity +
			taints*weightTaintToleration + spread*weightSpread
	}
}

// fitMessage is FitError.Error() followed by DefaultPreemption's verdict:
// "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated
// taint(s). preemption: 0/3 nodes are available: 3 Preemption is not
// helpful for scheduling." Reasons are counted over nodes and sorted as
// strings ("<count> <reason>"), exactly as Kubernetes sorts them.
func fitMessage(numNodes int, statuses []*status, preemptionNever bool) string {
	reasons := map[string]int{}
	preempt := map[string]int{}
	for _, st := range statuses {
		if st == nil {
			continue
		}
		for _, r := range st.reasons {
			reasons[r]++
		}
		if st.unresolvable {
			preempt[reasonPreemptionNotHelpful]++
		} else {
			preempt[reasonNoVictims]++
		}
	}
	msg := fmt.Sprintf("0/%d nodes are available:", numNodes)
	if h := histogram(reasons); h != "" {
		msg += " " + h + "."
	}
	if preemptionNever {
		return msg + " preemption: not eligible due to preemptionPolicy=Never."
	}
	return msg + fmt.Sprintf(" preemption: 0/%d nodes are available: %s.", numNodes, histogram(preempt))
}

func histogram(counts map[string]int) string {
	out := make([]string, 0, len(counts))
	for reason, n := range counts {
		out = append(out, fmt.Sprintf("%d %s", n, reason))
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

// numFeasibleNodesToFind is kube-scheduler's adaptive
// percentageOfNodesToScore: every node up to 100, then a share falling from
// 50% by 1% per 125 nodes (at least 5%, at least 100 nodes). The search
// resumes where the last one stopped, so all nodes get their turn.
func numFeasibleNodesToFind(numAllNodes int, percentage int) int {
	const minFeasibleNodesToFind, minFeasibleNodesPercentageToFind = 100, 5
	if numAllNodes < minFeasibleNodesToFind || percentage >= 100 {
		return numAllNodes
	}
	if percentage <= 0 {
		percentage = max(50-numAllNodes/125, minFeasibleNodesPercentageToFind)
	}
	n := numAllNodes * percentage / 100
	return max(n, minFeasibleNodesToFind)
}
