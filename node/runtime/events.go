package runtime

import (
	"time"

	apievents "github.com/containerd/containerd/api/events"
	"github.com/containerd/typeurl/v2"
)

// watchOOM records the kernel's OOM kills (containerd's /tasks/oom events)
// in a container label, so ContainerStatus can report OOMKilled even to a
// kubelet that restarted after the kill. It resubscribes with backoff if
// the daemon restarts, until Close.
func (r *Runtime) watchOOM() {
	backoff := 100 * time.Millisecond
	for r.ctx.Err() == nil {
		evC, errC := r.client.Subscribe(r.ctx, `topic=="/tasks/oom"`)
	loop:
		for {
			select {
			case env := <-evC:
				backoff = 100 * time.Millisecond
				if env == nil || env.Namespace != r.ns {
					continue
				}
				ev, err := typeurl.UnmarshalAny(env.Event)
				if err != nil {
					continue
				}
				oom, ok := ev.(*apievents.TaskOOM)
				if !ok {
					continue
				}
				c, err := r.client.LoadContainer(r.ctx, oom.ContainerID)
				if err != nil {
					continue
				}
				if _, err := c.SetLabels(r.ctx, map[string]string{labelOOMKilled: "true"}); err != nil {
					r.log.Warn("record OOM kill", "id", oom.ContainerID, "err", err)
				}
				r.log.Info("container OOM-killed", "id", oom.ContainerID)
			case err := <-errC:
				if r.ctx.Err() == nil {
					r.log.Warn("containerd event stream broke; resubscribing", "err", err, "in", backoff)
				}
				break loop
			}
		}
		select {
		case <-r.ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}
