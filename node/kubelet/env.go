package kubelet

import (
	"context"
	"fmt"
	"sort"
	"strings"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// env resolves c's envFrom and env into "NAME=value" pairs, in
// Kubernetes' order and with its $(VAR) expansion and error messages
// (which become CreateContainerConfigError).
func (w *podWorker) env(ctx context.Context, c v1.Container) ([]string, error) {
	pod := w.pod
	vars := map[string]string{}
	var order []string
	set := func(k, v string) {
		if _, ok := vars[k]; !ok {
			order = append(order, k)
		}
		vars[k] = v
	}
	cms := map[string]*v1.ConfigMap{}
	secrets := map[string]*v1.Secret{}
	getCM := func(name string, optional *bool) (*v1.ConfigMap, error) {
		if cm, ok := cms[name]; ok {
			return cm, nil
		}
		cm, err := w.k.client.CoreV1().ConfigMaps(pod.Namespace).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			if optional != nil && *optional {
				return nil, nil
			}
			return nil, fmt.Errorf("configmap %q not found", name)
		}
		if err != nil {
			return nil, fmt.Errorf("get configmap %q: %w", name, err)
		}
		cms[name] = cm
		return cm, nil
	}
	getSecret := func(name string, optional *bool) (*v1.Secret, error) {
		if s, ok := secrets[name]; ok {
			return s, nil
		}
		s, err := w.k.client.CoreV1().Secrets(pod.Namespace).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			if optional != nil && *optional {
				return nil, nil
			}
			return nil, fmt.Errorf("secret %q not found", name)
		}
		if err != nil {
			return nil, fmt.Errorf("get secret %q: %w", name, err)
		}
		secrets[name] = s
		return s, nil
	}
	for _, from := range c.EnvFrom {
		switch {
		case from.ConfigMapRef != nil:
			cm, err := getCM(from.ConfigMapRef.Name, from.ConfigMapRef.Optional)
			if err != nil {
				return nil, err
			}
			if cm != nil {
				for _, k := range sortedKeys(cm.Data) {
					set(from.Prefix+k, cm.Data[k])
				}
			}
		case from.SecretRef != nil:
			s, err := getSecret(from.SecretRef.Name, from.SecretRef.Optional)
			if err != nil {
				return nil, err
			}
			if s != nil {
				keys := make([]string, 0, len(s.Data))
				for k := range s.Data {
					keys = append(keys, k)
				}
				sort.Strings(keys)
				for _, k := range keys {
					set(from.Prefix+k, string(s.Data[k]))
				}
			}
		}
	}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			set(e.Name, expand(e.Value, vars))
			continue
		}
		vf := e.ValueFrom
		switch {
		case vf.ConfigMapKeyRef != nil:
			ref := vf.ConfigMapKeyRef
			cm, err := getCM(ref.Name, ref.Optional)
			if err != nil {
				return nil, err
			}
			if cm == nil {
				continue
			}
			v, ok := cm.Data[ref.Key]
			if !ok {
				if ref.Optional != nil && *ref.Optional {
					continue
				}
				return nil, fmt.Errorf("couldn't find key %s in ConfigMap %s/%s", ref.Key, pod.Namespace, ref.Name)
			}
			set(e.Name, v)
		case vf.SecretKeyRef != nil:
			ref := vf.SecretKeyRef
			s, err := getSecret(ref.Name, ref.Optional)
			if err != nil {
				return nil, err
			}
			if s == nil {
				continue
			}
			v, ok := s.Data[ref.Key]
			if !ok {
				if ref.Optional != nil && *ref.Optional {
					continue
				}
				return nil, fmt.Errorf("couldn't find key %s in Secret %s/%s", ref.Key, pod.Namespace, ref.Name)
			}
			set(e.Name, string(v))
		case vf.FieldRef != nil:
			v, err := w.fieldValue(vf.FieldRef.FieldPath)
			if err != nil {
				return nil, err
			}
			set(e.Name, v)
		case vf.ResourceFieldRef != nil:
			v, err := resourceValue(c, vf.ResourceFieldRef)
			if err != nil {
				return nil, err
			}
			set(e.Name, v)
		}
	}
	out := make([]string, 0, len(order))
	for _, k := range order {
		out = append(out, k+"="+vars[k])
	}
	return out, nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// fieldValue is the downward API's value of a fieldRef.
func (w *podWorker) fieldValue(path string) (string, error) {
	pod := w.pod
	switch path {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.podIP", "status.podIPs":
		return w.podIP, nil
	case "status.hostIP", "status.hostIPs":
		return w.k.cfg.NodeIP, nil
	}
	for prefix, m := range map[string]map[string]string{"metadata.labels": pod.Labels, "metadata.annotations": pod.Annotations} {
		if rest, ok := strings.CutPrefix(path, prefix+"['"); ok && strings.HasSuffix(rest, "']") {
			return m[strings.TrimSuffix(rest, "']")], nil
		}
	}
	return "", fmt.Errorf("unsupported fieldPath: %s", path)
}

// resourceValue is a resourceFieldRef's value (limits fall back to the
// node's capacity, as in Kubernetes, here simplified to "0" meaning none).
func resourceValue(c v1.Container, ref *v1.ResourceFieldSelector) (string, error) {
	var list v1.ResourceList
	name := ref.Resource
	switch {
	case strings.HasPrefix(name, "limits."):
		list, name = c.Resources.Limits, strings.TrimPrefix(name, "limits.")
	case strings.HasPrefix(name, "requests."):
		list, name = c.Resources.Requests, strings.TrimPrefix(name, "requests.")
	default:
		return "", fmt.Errorf("unsupported container resource: %s", ref.Resource)
	}
	q, ok := list[v1.ResourceName(name)]
	if !ok {
		return "0", nil
	}
	div := ref.Divisor
	if div.IsZero() {
		if name == "cpu" {
			return fmt.Sprint((q.MilliValue() + 999) / 1000), nil
		}
		return fmt.Sprint(q.Value()), nil
	}
	return fmt.Sprint((q.MilliValue() + div.MilliValue() - 1) / div.MilliValue()), nil
}

func envMap(env []string) map[string]string {
	m := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return m
}

// expand is Kubernetes' $(VAR) expansion: known variables are replaced,
// $$ escapes a $, unknown references stay as they are.
func expand(s string, vars map[string]string) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
			continue
		case '(':
			if end := strings.IndexByte(s[i+2:], ')'); end >= 0 {
				name := s[i+2 : i+2+end]
				if v, ok := vars[name]; ok {
					b.WriteString(v)
				} else {
					b.WriteString(s[i : i+3+end])
				}
				i += 2 + end
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func expandAll(ss []string, vars map[string]string) []string {
	if ss == nil {
		return nil
	}
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = expand(s, vars)
	}
	return out
}
