// Package hollow runs hollow nodes, as Kubernetes' kubemark does: Nodes that
// register and heartbeat through the API and a kubelet that "runs" the pods
// bound to them by reporting the status a real kubelet would (Running and
// Ready at once; run-to-completion pods finish after a while), without any
// container runtime. Tests and `synod hollow-nodes` use it to drive the
// scheduler and controllers before real workers exist.
//
// Pod annotations steer the fake runtime:
//
//	hollow.synod.io/run-for     Go duration a restartPolicy Never/OnFailure pod runs (default 1s)
//	hollow.synod.io/exit-code   its exit code (default 0: Succeeded; otherwise Failed)
//	hollow.synod.io/never-ready "true": the pod runs but never becomes Ready
package hollow
