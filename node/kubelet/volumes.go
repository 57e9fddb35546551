package kubelet

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"synod/node/runtime"
)

// volumeDir is where a pod volume lives on the node.
func (k *Kubelet) volumeDir(uid string, name string) string {
	return filepath.Join(k.cfg.StateDir, "pods", uid, "volumes", name)
}

// ensureVolumes prepares the pod's volumes once (before the first
// container): directories for emptyDir, checks or creates hostPath, and
// writes configMap and secret keys as files. A failure is reported as
// FailedMount and retried.
func (w *podWorker) ensureVolumes(ctx context.Context) bool {
	if w.volumesReady {
		return true
	}
	for _, v := range w.pod.Spec.Volumes {
		if err := w.setupVolume(ctx, v); err != nil {
			msg := fmt.Sprintf("MountVolume.SetUp failed for volume %q : %v", v.Name, err)
			w.log.Warn("volume", "volume", v.Name, "err", err)
			w.k.recorder.Event(w.pod, v1.EventTypeWarning, "FailedMount", msg)
			w.waitAll("ContainerCreating", "")
			w.kickAt(time.Now().Add(2 * time.Second))
			return false
		}
	}
	w.volumesReady = true
	return true
}

func (w *podWorker) setupVolume(ctx context.Context, v v1.Volume) error {
	dir := w.k.volumeDir(string(w.uid), v.Name)
	switch {
	case v.EmptyDir != nil:
		if err := os.MkdirAll(dir, 0o777); err != nil {
			return err
		}
		return os.Chmod(dir, 0o777) // as the kubelet's emptyDir: any container user may write
	case v.HostPath != nil:
		return setupHostPath(v.HostPath)
	case v.ConfigMap != nil:
		cm, err := w.k.client.CoreV1().ConfigMaps(w.namespace).Get(ctx, v.ConfigMap.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			if v.ConfigMap.Optional != nil && *v.ConfigMap.Optional {
				return writeFiles(dir, nil, nil, 0o644)
			}
			return fmt.Errorf("configmap %q not found", v.ConfigMap.Name)
		}
		if err != nil {
			return err
		}
		data := map[string][]byte{}
		for k, s := range cm.Data {
			data[k] = []byte(s)
		}
		for k, b := range cm.BinaryData {
			data[k] = b
		}
		return writeFiles(dir, data, v.ConfigMap.Items, modeOr(v.ConfigMap.DefaultMode, 0o644))
	case v.Secret != nil:
		s, err := w.k.client.CoreV1().Secrets(w.namespace).Get(ctx, v.Secret.SecretName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			if v.Secret.Optional != nil && *v.Secret.Optional {
				return writeFiles(dir, nil, nil, 0o644)
			}
			return fmt.Errorf("secret %q not found", v.Secret.SecretName)
		}
		if err != nil {
			return err
		}
		return writeFiles(dir, s.Data, v.Secret.Items, modeOr(v.Secret.DefaultMode, 0o644))
	}
	return errors.New("unsupported volume type (synod's kubelet supports emptyDir, hostPath, configMap and secret)")
}

func modeOr(m *int32, def os.FileMode) os.FileMode {
	if m == nil {
		return def
	}
	return os.FileMode(*m) & 0o777
}

// writeFiles writes the keys (or the selected items) as files into dir.
func writeFiles(dir string, data map[string][]byte, items []v1.KeyToPath, mode os.FileMode) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	type file struct {
		path string
		data []byte
		mode os.FileMode
	}
	var files []file
	if len(items) == 0 {
		keys := make([]string, 0, len(data))
		for k := range data {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			files = append(files, file{k, data[k], mode})
		}
	} else {
		for _, it := range items {
			b, ok := data[it.Key]
			if !ok {
				return fmt.Errorf("configmap or secret key %q not found", it.Key)
			}
			files = append(files, file{it.Path, b, modeOr(it.Mode, mode)})
		}
	}
	for _, f := range files {
		p := filepath.Join(dir, filepath.Clean("/"+f.path))
		if !strings.HasPrefix(p, dir+string(filepath.Separator)) {
			return fmt.Errorf("invalid path %q", f.path)
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, f.data, f.mode); err != nil {
			return err
		}
		if err := os.Chmod(p, f.mode); err != nil {
			return err
		}
	}
	return nil
}

// setupHostPath applies the hostPath type's checks and creations.
func setupHostPath(h *v1.HostPathVolumeSource) error {
	t := v1.HostPathUnset
	if h.Type != nil {
		t = *h.Type
	}
	fi, err := os.Stat(h.Path)
	switch t {
	case v1.HostPathUnset:
		return nil
	case v1.HostPathDirectoryOrCreate:
		if err != nil {
			return os.MkdirAll(h.Path, 0o755)
		}
		if !fi.IsDir() {
			return fmt.Errorf("hostPath type check failed: %s is not a directory", h.Path)
		}
	case v1.HostPathDirectory:
		if err != nil || !fi.IsDir() {
			return fmt.Errorf("hostPath type check failed: %s is not a directory", h.Path)
		}
	case v1.HostPathFileOrCreate:
		if err != nil {
			if err := os.MkdirAll(filepath.Dir(h.Path), 0o755); err != nil {
				return err
			}
			f, err := os.OpenFile(h.Path, os.O_CREATE|os.O_WRONLY, 0o644)
			if err != nil {
				return err
			}
			return f.Close()
		}
		if fi.IsDir() {
			return fmt.Errorf("hostPath type check failed: %s is not a file", h.Path)
		}
	case v1.HostPathFile:
		if err != nil || fi.IsDir() {
			return fmt.Errorf("hostPath type check failed: %s is not a file", h.Path)
		}
	default:
		if err != nil {
			return fmt.Errorf("hostPath type check failed: %s does not exist", h.Path)
		}
	}
	return nil
}

// mounts turns c's volumeMounts into bind mounts of the prepared volumes.
func (w *podWorker) mounts(c v1.Container) ([]runtime.Mount, error) {
	vols := map[string]v1.Volume{}
	for _, v := range w.pod.Spec.Volumes {
		vols[v.Name] = v
	}
	var out []runtime.Mount
	for _, m := range c.VolumeMounts {
		v, ok := vols[m.Name]
		if !ok {
			return nil, fmt.Errorf("volume %q of volumeMount %q not found", m.Name, m.MountPath)
		}
		host := w.k.volumeDir(string(w.uid), m.Name)
		if v.HostPath != nil {
			host = v.HostPath.Path
		}
		if m.SubPath != "" {
			sub := filepath.Join(host, filepath.Clean("/"+m.SubPath))
			if _, err := os.Stat(sub); errors.Is(err, os.ErrNotExist) && (v.EmptyDir != nil || v.HostPath != nil) {
				if err := os.MkdirAll(sub, 0o755); err != nil {
					return nil, fmt.Errorf("subPath %q: %w", m.SubPath, err)
				}
			}
			host = sub
		}
		ro := m.ReadOnly || v.ConfigMap != nil || v.Secret != nil
		out = append(out, runtime.Mount{HostPath: host, ContainerPath: m.MountPath, ReadOnly: ro})
	}
	return out, nil
}
