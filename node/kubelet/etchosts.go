package kubelet

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	v1 "k8s.io/api/core/v1"

	"synod/node/runtime"
)

// etcMounts are the files the kubelet manages for a pod with its own
// network namespace: /etc/hosts (localhost, the pod's IP and hostname, its
// hostAliases) and /etc/hostname, as the kubelet's "Kubernetes-managed
// hosts file". Without them a container sees its image's files, which know
// nothing of the pod. A container that mounts a volume at either path keeps
// its own.
func (w *podWorker) etcMounts(c v1.Container) ([]runtime.Mount, error) {
	if w.pod.Spec.HostNetwork || w.podIP == "" {
		return nil, nil
	}
	taken := map[string]bool{}
	for _, m := range c.VolumeMounts {
		taken[filepath.Clean(m.MountPath)] = true
	}
	dir := w.k.podDir(w.uid)
	hostname := podHostname(w.pod)
	files := []struct{ name, path, content string }{
		{"etc-hosts", "/etc/hosts", hostsFile(w.podIP, hostname, w.pod.Spec.HostAliases)},
		{"etc-hostname", "/etc/hostname", hostname + "\n"},
	}
	var out []runtime.Mount
	for _, f := range files {
		if taken[f.path] {
			continue
		}
		host := filepath.Join(dir, f.name)
		if err := writeIfChanged(host, []byte(f.content)); err != nil {
			return nil, fmt.Errorf("write %s: %w", f.path, err)
		}
		out = append(out, runtime.Mount{HostPath: host, ContainerPath: f.path})
	}
	return out, nil
}

// hostsFile renders the kubelet's managed /etc/hosts.
func hostsFile(podIP, hostname string, aliases []v1.HostAlias) string {
	var b strings.Builder
	b.WriteString("# Kubernetes-managed hosts file.\n")
	b.WriteString("127.0.0.1\tlocalhost\n")
	b.WriteString("::1\tlocalhost ip6-localhost ip6-loopback\n")
	b.WriteString("fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n")
	fmt.Fprintf(&b, "%s\t%s\n", podIP, hostname)
	if len(aliases) > 0 {
		b.WriteString("\n# Entries added by HostAliases.\n")
		for _, a := range aliases {
			fmt.Fprintf(&b, "%s\t%s\n", a.IP, strings.Join(a.Hostnames, "\t"))
		}
	}
	return b.String()
}

// writeIfChanged leaves an identical file alone: containers bind-mount it,
// and a rename would leave them looking at the old inode.
func writeIfChanged(path string, data []byte) error {
	if old, err := os.ReadFile(path); err == nil && string(old) == string(data) {
		return nil
	}
	return os.WriteFile(path, data, 0o644)
}
