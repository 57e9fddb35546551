package check

import (
	"fmt"
	"sort"
	"strings"

	"synod/chaos/history"
)

// KubeDetails are the figures of the Kubernetes objects check.
type KubeDetails struct {
	Objects  int      `json:"objects"`
	AckedOps int      `json:"acked_ops"`
	Unknown  int      `json:"unknown_ops"`
	Servers  int      `json:"servers"`
	Problems []string `json:"problems,omitempty"`
}

// kubeEffect is the state an op leaves its object in.
type kubeEffect struct {
	present bool
	data    string
}

func (e kubeEffect) String() string {
	if !e.present {
		return "absent"
	}
	return fmt.Sprintf("%q", e.data)
}

func effectOf(o history.KubeOp) kubeEffect {
	if o.Verb == "delete" {
		return kubeEffect{}
	}
	return kubeEffect{present: true, data: o.Data}
}

// checkKube: every object's state on every apiserver after the run is what
// its last acknowledged op left, or what an op with an unknown outcome
// issued after it left. Each object has one client, so its ops are
// sequential and "last" is well defined.
func checkKube(h *history.History) Result {
	r := Result{Name: "kube-objects"}
	if len(h.Kube) == 0 && len(h.KubeFinal) == 0 {
		r.Pass = true
		r.Evidence = "no Kubernetes-API clients"
		return r
	}
	type objKey struct{ resource, name string }
	ops := map[objKey][]history.KubeOp{}
	d := KubeDetails{Servers: len(h.KubeFinal)}
	for _, o := range h.Kube {
		if !o.OK && !o.Unknown {
			continue // refused: no effect
		}
		k := objKey{o.Resource, o.Name}
		ops[k] = append(ops[k], o)
		if o.OK {
			d.AckedOps++
		} else {
			d.Unknown++
		}
	}
	d.Objects = len(ops)
	var problems []string
	for _, f := range h.KubeFinal {
		if f.Err != "" {
			problems = append(problems, fmt.Sprintf("%s: final read failed: %s", f.Server, f.Err))
			continue
		}
		final := map[objKey]kubeEffect{}
		for _, o := range f.Objects {
			final[objKey{o.Resource, o.Name}] = kubeEffect{present: true, data: o.Data}
		}
		keys := map[objKey]bool{}
		for k := range ops {
			keys[k] = true
		}
		for k := range final {
			keys[k] = true
		}
		var sorted []objKey
		for k := range keys {
			sorted = append(sorted, k)
		}
		sort.Slice(sorted, func(i, j int) bool {
			return sorted[i].resource+"/"+sorted[i].name < sorted[j].resource+"/"+sorted[j].name
		})
		for _, k := range sorted {
			got := final[k]
			list := ops[k]
			sort.Slice(list, func(i, j int) bool { return list[i].Call < list[j].Call })
			allowed := []kubeEffect{{}} // before any acknowledged op: absent
			var lastAcked *history.KubeOp
			for i := range list {
				o := list[i]
				switch {
				case o.OK:
					allowed = []kubeEffect{effectOf(o)}
					lastAcked = &list[i]
				default:
					allowed = append(allowed, effectOf(o))
				}
			}
			ok := false
			for _, a := range allowed {
				if a == got {
					ok = true
				}
			}
			if ok {
				continue
			}
			var want []string
			for _, a := range allowed {
				want = append(want, a.String())
			}
			what := "no acknowledged op"
			if lastAcked != nil {
				what = fmt.Sprintf("last acknowledged: client %d's %s %s at %s", lastAcked.Client, lastAcked.Verb, effectOf(*lastAcked), stamp(lastAcked.Return))
			}
			problems = append(problems, fmt.Sprintf("%s: %s/%s is %s, want one of [%s] (%s)", f.Server, k.resource, k.name, got, strings.Join(want, ", "), what))
		}
	}
	r.Details = d
	if len(problems) > 0 {
		d.Problems = problems
		if len(d.Problems) > 20 {
			d.Problems = d.Problems[:20]
		}
		r.Details = d
		r.Evidence = fmt.Sprintf("%d problems; first: %s", len(problems), strings.Join(d.Problems[:min(5, len(d.Problems))], "; "))
		return r
	}
	if len(h.KubeFinal) == 0 {
		r.Evidence = "no final read of the Kubernetes objects"
		return r
	}
	r.Pass = true
	r.Evidence = fmt.Sprintf("%d objects (%d acknowledged ops, %d unknown) as their last acknowledged op left them on all %d apiservers",
		d.Objects, d.AckedOps, d.Unknown, d.Servers)
	return r
}
