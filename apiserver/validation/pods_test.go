package validation

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func intstrInt(i int32) intstr.IntOrString  { return intstr.FromInt32(i) }
func intstrStr(s string) intstr.IntOrString { return intstr.FromString(s) }

func TestPodDefaults(t *testing.T) {
	p := validPod()
	p.Spec.Containers = append(p.Spec.Containers,
		corev1.Container{Name: "side", Image: "busybox"},
		corev1.Container{Name: "digest", Image: "registry.local:5000/app@sha256:abcd"},
		corev1.Container{Name: "latest", Image: "registry.local:5000/app:latest"},
		corev1.Container{Name: "always", Image: "app:1", ImagePullPolicy: corev1.PullNever})
	Default(p)
	s := p.Spec
	if s.RestartPolicy != corev1.RestartPolicyAlways || s.DNSPolicy != corev1.DNSClusterFirst || s.SchedulerName != "default-scheduler" {
		t.Errorf("restartPolicy/dnsPolicy/schedulerName = %q/%q/%q", s.RestartPolicy, s.DNSPolicy, s.SchedulerName)
	}
	if s.TerminationGracePeriodSeconds == nil || *s.TerminationGracePeriodSeconds != 30 {
		t.Errorf("terminationGracePeriodSeconds = %v", s.TerminationGracePeriodSeconds)
	}
	if s.SecurityContext == nil || s.EnableServiceLinks == nil || !*s.EnableServiceLinks {
		t.Errorf("securityContext %v enableServiceLinks %v", s.SecurityContext, s.EnableServiceLinks)
	}
	if s.Priority == nil || *s.Priority != 0 || s.ServiceAccountName != "default" || s.DeprecatedServiceAccount != "default" {
		t.Errorf("priority %v serviceAccountName %q", s.Priority, s.ServiceAccountName)
	}
	pulls := map[string]corev1.PullPolicy{"web": corev1.PullIfNotPresent, "side": corev1.PullAlways, "digest": corev1.PullIfNotPresent,
		"latest": corev1.PullAlways, "always": corev1.PullNever}
	for _, c := range s.Containers {
		if c.ImagePullPolicy != pulls[c.Name] {
			t.Errorf("container %s imagePullPolicy = %q, want %q", c.Name, c.ImagePullPolicy, pulls[c.Name])
		}
		if c.TerminationMessagePath != "/dev/termination-log" || c.TerminationMessagePolicy != corev1.TerminationMessageReadFile {
			t.Errorf("container %s termination message %q %q", c.Name, c.TerminationMessagePath, c.TerminationMessagePolicy)
		}
	}
	c := s.Containers[0]
	if c.Ports[0].Protocol != corev1.ProtocolTCP {
		t.Errorf("port protocol = %q", c.Ports[0].Protocol)
	}
	if q := c.Resources.Requests[corev1.ResourceMemory]; q.String() != "128Mi" {
		t.Errorf("memory request defaulted from limit = %s", q.String())
	}
	if q := c.Resources.Requests[corev1.ResourceCPU]; q.String() != "100m" {
		t.Errorf("cpu request kept = %s", q.String())
	}
	if c.Env[1].ValueFrom.FieldRef.APIVersion != "v1" {
		t.Errorf("fieldRef apiVersion = %q", c.Env[1].ValueFrom.FieldRef.APIVersion)
	}
	if pr := c.ReadinessProbe; pr.TimeoutSeconds != 1 || pr.PeriodSeconds != 10 || pr.SuccessThreshold != 1 || pr.FailureThreshold != 3 ||
		pr.HTTPGet.Path != "/" || pr.HTTPGet.Scheme != corev1.URISchemeHTTP {
		t.Errorf("probe defaults %+v", pr)
	}
	if s.Volumes[0].EmptyDir == nil || *s.Volumes[1].ConfigMap.DefaultMode != 0644 {
		t.Errorf("volume defaults %+v", s.Volumes)
	}
	if p.Status.Phase != corev1.PodPending || p.Status.QOSClass != corev1.PodQOSBurstable {
		t.Errorf("status %q %q", p.Status.Phase, p.Status.QOSClass)
	}
	// defaulting twice changes nothing
	again := p.DeepCopy()
	Default(again)
	if !equalJSON(t, p, again) {
		t.Errorf("Default is not idempotent")
	}
}

func TestPodHostNetworkDefaultsHostPort(t *testing.T) {
	p := validPod()
	p.Spec.HostNetwork = true
	Default(p)
	if hp := p.Spec.Containers[0].Ports[0].HostPort; hp != 80 {
		t.Errorf("hostPort = %d", hp)
	}
	expectErrors(t, ValidateCreate(p))
}

func TestPodValidation(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(s *corev1.PodSpec)
		want   want
	}{
		{"no containers", func(s *corev1.PodSpec) { s.Containers = nil }, want{"spec.containers", field.ErrorTypeRequired, ""}},
		{"no image", func(s *corev1.PodSpec) { s.Containers[0].Image = "" }, want{"spec.containers[0].image", field.ErrorTypeRequired, ""}},
		{"image whitespace", func(s *corev1.PodSpec) { s.Containers[0].Image = " nginx" }, want{"spec.containers[0].image", field.ErrorTypeInvalid, "must not have leading or trailing whitespace"}},
		{"no container name", func(s *corev1.PodSpec) { s.Containers[0].Name = "" }, want{"spec.containers[0].name", field.ErrorTypeRequired, ""}},
		{"bad container name", func(s *corev1.PodSpec) { s.Containers[0].Name = "Web_1" }, want{"spec.containers[0].name", field.ErrorTypeInvalid, "a lowercase RFC 1123 label must consist of"}},
		{"duplicate container", func(s *corev1.PodSpec) { s.Containers = append(s.Containers, s.Containers[0]) }, want{"spec.containers[1].name", field.ErrorTypeDuplicate, ""}},
		{"init duplicates container", func(s *corev1.PodSpec) {
			s.InitContainers = []corev1.Container{{Name: "web", Image: "busybox"}}
		}, want{"spec.initContainers[0].name", field.ErrorTypeDuplicate, ""}},
		{"init probe", func(s *corev1.PodSpec) {
			s.InitContainers = []corev1.Container{{Name: "init", Image: "busybox", ReadinessProbe: s.Containers[0].ReadinessProbe}}
		}, want{"spec.initContainers[0].readinessProbe", field.ErrorTypeForbidden, "may not be set for init containers without restartPolicy=Always"}},
		{"container restartPolicy", func(s *corev1.PodSpec) { s.Containers[0].RestartPolicy = ptrTo(corev1.ContainerRestartPolicyAlways) },
			want{"spec.containers[0].restartPolicy", field.ErrorTypeForbidden, "may not be set for non-init containers"}},
		{"port zero", func(s *corev1.PodSpec) { s.Containers[0].Ports[0].ContainerPort = 0 }, want{"spec.containers[0].ports[0].containerPort", field.ErrorTypeRequired, ""}},
		{"port too big", func(s *corev1.PodSpec) { s.Containers[0].Ports[0].ContainerPort = 70000 }, want{"spec.containers[0].ports[0].containerPort", field.ErrorTypeInvalid, "must be between 1 and 65535, inclusive"}},
		{"bad port name", func(s *corev1.PodSpec) { s.Containers[0].Ports[0].Name = "http_port" }, want{"spec.containers[0].ports[0].name", field.ErrorTypeInvalid, ""}},
		{"duplicate port name", func(s *corev1.PodSpec) {
			s.Containers[0].Ports = append(s.Containers[0].Ports, corev1.ContainerPort{Name: "http", ContainerPort: 81})
		}, want{"spec.containers[0].ports[1].name", field.ErrorTypeDuplicate, ""}},
		{"bad protocol", func(s *corev1.PodSpec) { s.Containers[0].Ports[0].Protocol = "ICMP" }, want{"spec.containers[0].ports[0].protocol", field.ErrorTypeNotSupported, ""}},
		{"host port conflict", func(s *corev1.PodSpec) {
			s.Containers[0].Ports[0].HostPort = 8080
			s.Containers = append(s.Containers, corev1.Container{Name: "b", Image: "b", Ports: []corev1.ContainerPort{{ContainerPort: 81, HostPort: 8080}}})
		}, want{"spec.containers[1].ports[0].hostPort", field.ErrorTypeDuplicate, ""}},
		{"request above limit", func(s *corev1.PodSpec) {
			s.Containers[0].Resources.Requests[corev1.ResourceCPU] = resource.MustParse("2")
		}, want{"spec.containers[0].resources.requests", field.ErrorTypeInvalid, "must be less than or equal to cpu limit of 1"}},
		{"negative request", func(s *corev1.PodSpec) {
			s.Containers[0].Resources.Requests[corev1.ResourceMemory] = resource.MustParse("-1")
		}, want{"spec.containers[0].resources.requests[memory]", field.ErrorTypeInvalid, "must be greater than or equal to 0"}},
		{"bad resource name", func(s *corev1.PodSpec) {
			s.Containers[0].Resources.Limits["gpu"] = resource.MustParse("1")
		}, want{"spec.containers[0].resources.limits[gpu]", field.ErrorTypeInvalid, "must be a standard resource for containers"}},
		{"extended resource not integer", func(s *corev1.PodSpec) {
			s.Containers[0].Resources.Limits["example.com/gpu"] = resource.MustParse("500m")
		}, want{"spec.containers[0].resources.limits[example.com/gpu]", field.ErrorTypeInvalid, "must be an integer"}},
		{"bad restartPolicy", func(s *corev1.PodSpec) { s.RestartPolicy = "Sometimes" }, want{"spec.restartPolicy", field.ErrorTypeNotSupported, `supported values: "Always", "OnFailure", "Never"`}},
		{"bad dnsPolicy", func(s *corev1.PodSpec) { s.DNSPolicy = "Google" }, want{"spec.dnsPolicy", field.ErrorTypeNotSupported, ""}},
		{"dnsPolicy None without config", func(s *corev1.PodSpec) { s.DNSPolicy = corev1.DNSNone }, want{"spec.dnsConfig", field.ErrorTypeRequired, "must provide `dnsConfig` when `dnsPolicy` is None"}},
		{"bad pull policy", func(s *corev1.PodSpec) { s.Containers[0].ImagePullPolicy = "Sometimes" }, want{"spec.containers[0].imagePullPolicy", field.ErrorTypeNotSupported, ""}},
		{"duplicate volume", func(s *corev1.PodSpec) { s.Volumes = append(s.Volumes, corev1.Volume{Name: "data"}) }, want{"spec.volumes[2].name", field.ErrorTypeDuplicate, ""}},
		{"bad volume name", func(s *corev1.PodSpec) { s.Volumes[1].Name = "Cfg" }, want{"spec.volumes[1].name", field.ErrorTypeInvalid, "RFC 1123 label"}},
		{"two volume sources", func(s *corev1.PodSpec) {
			s.Volumes[1].Secret = &corev1.SecretVolumeSource{SecretName: "s"}
		}, want{"spec.volumes[1]", field.ErrorTypeForbidden, "may not specify more than 1 volume type"}},
		{"configMap volume no name", func(s *corev1.PodSpec) { s.Volumes[1].ConfigMap.Name = "" }, want{"spec.volumes[1].configMap.name", field.ErrorTypeRequired, ""}},
		{"hostPath no path", func(s *corev1.PodSpec) {
			s.Volumes = append(s.Volumes, corev1.Volume{Name: "h", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{}}})
		}, want{"spec.volumes[2].hostPath.path", field.ErrorTypeRequired, ""}},
		{"mount of unknown volume", func(s *corev1.PodSpec) { s.Containers[0].VolumeMounts[0].Name = "nope" }, want{"spec.containers[0].volumeMounts[0].name", field.ErrorTypeNotFound, ""}},
		{"mount of invalid volume", func(s *corev1.PodSpec) {
			s.Volumes[0].Name = "Data"
			s.Containers[0].VolumeMounts[0].Name = "Data"
		}, want{"spec.containers[0].volumeMounts[0].name", field.ErrorTypeNotFound, ""}},
		{"mount path required", func(s *corev1.PodSpec) { s.Containers[0].VolumeMounts[0].MountPath = "" }, want{"spec.containers[0].volumeMounts[0].mountPath", field.ErrorTypeRequired, ""}},
		{"mount path unique", func(s *corev1.PodSpec) {
			s.Containers[0].VolumeMounts = append(s.Containers[0].VolumeMounts, corev1.VolumeMount{Name: "cfg", MountPath: "/data"})
		}, want{"spec.containers[0].volumeMounts[1].mountPath", field.ErrorTypeInvalid, "must be unique"}},
		{"subPath backstep", func(s *corev1.PodSpec) { s.Containers[0].VolumeMounts[0].SubPath = "../etc" }, want{"spec.containers[0].volumeMounts[0].subPath", field.ErrorTypeInvalid, "must not contain '..'"}},
		{"env name", func(s *corev1.PodSpec) { s.Containers[0].Env[0].Name = "" }, want{"spec.containers[0].env[0].name", field.ErrorTypeRequired, ""}},
		{"env name with =", func(s *corev1.PodSpec) { s.Containers[0].Env[0].Name = "A=B" }, want{"spec.containers[0].env[0].name", field.ErrorTypeInvalid, ""}},
		{"env value and valueFrom", func(s *corev1.PodSpec) { s.Containers[0].Env[1].Value = "x" }, want{"spec.containers[0].env[1].valueFrom", field.ErrorTypeInvalid, "may not be specified when `value` is not empty"}},
		{"env bad fieldPath", func(s *corev1.PodSpec) { s.Containers[0].Env[1].ValueFrom.FieldRef.FieldPath = "spec.nope" }, want{"spec.containers[0].env[1].valueFrom.fieldRef.fieldPath", field.ErrorTypeNotSupported, ""}},
		{"probe without handler", func(s *corev1.PodSpec) { s.Containers[0].LivenessProbe = &corev1.Probe{} }, want{"spec.containers[0].livenessProbe", field.ErrorTypeRequired, "must specify a handler type"}},
		{"liveness successThreshold", func(s *corev1.PodSpec) {
			s.Containers[0].LivenessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstrInt(80)}}, SuccessThreshold: 2}
		}, want{"spec.containers[0].livenessProbe.successThreshold", field.ErrorTypeInvalid, "must be 1"}},
		{"activeDeadlineSeconds", func(s *corev1.PodSpec) { s.ActiveDeadlineSeconds = ptrTo(int64(0)) }, want{"spec.activeDeadlineSeconds", field.ErrorTypeInvalid, "must be between 1 and 2147483647, inclusive"}},
		{"bad nodeSelector", func(s *corev1.PodSpec) { s.NodeSelector = map[string]string{"a b": "c"} }, want{"spec.nodeSelector", field.ErrorTypeInvalid, ""}},
		{"bad hostname", func(s *corev1.PodSpec) { s.Hostname = "a.b" }, want{"spec.hostname", field.ErrorTypeInvalid, ""}},
		{"bad serviceAccountName", func(s *corev1.PodSpec) { s.ServiceAccountName = "Bad" }, want{"spec.serviceAccountName", field.ErrorTypeInvalid, ""}},
		{"toleration exists with value", func(s *corev1.PodSpec) { s.Tolerations[0].Value = "x" }, want{"spec.tolerations[0].operator", field.ErrorTypeInvalid, "value must be empty when `operator` is 'Exists'"}},
		{"toleration seconds without NoExecute", func(s *corev1.PodSpec) { s.Tolerations[0].Effect = corev1.TaintEffectNoSchedule }, want{"spec.tolerations[0].effect", field.ErrorTypeInvalid, "effect must be 'NoExecute' when `tolerationSeconds` is set"}},
		{"toleration empty key", func(s *corev1.PodSpec) {
			s.Tolerations = []corev1.Toleration{{Operator: corev1.TolerationOpEqual, Value: "x"}}
		}, want{"spec.tolerations[0].operator", field.ErrorTypeInvalid, "operator must be Exists when `key` is empty"}},
		{"hostNetwork port mismatch", func(s *corev1.PodSpec) {
			s.HostNetwork = true
			s.Containers[0].Ports[0].HostPort = 8080
		}, want{"spec.containers[0].ports[0].containerPort", field.ErrorTypeInvalid, "must match `hostPort` when `hostNetwork` is true"}},
		{"privileged without escalation", func(s *corev1.PodSpec) {
			s.Containers[0].SecurityContext = &corev1.SecurityContext{Privileged: ptrTo(true), AllowPrivilegeEscalation: ptrTo(false)}
		}, want{"spec.containers[0].securityContext", field.ErrorTypeInvalid, "cannot set `allowPrivilegeEscalation` to false and `privileged` to true"}},
		{"negative runAsUser", func(s *corev1.PodSpec) { s.SecurityContext = &corev1.PodSecurityContext{RunAsUser: ptrTo(int64(-1))} }, want{"spec.securityContext.runAsUser", field.ErrorTypeInvalid, ""}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := validPod()
			c.mutate(&p.Spec)
			Default(p)
			expectErrors(t, ValidateCreate(p), c.want)
		})
	}
}

func TestPodEphemeralContainersOnCreate(t *testing.T) {
	p := validPod()
	p.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debug", Image: "busybox"}}}
	Default(p)
	expectErrors(t, ValidateCreate(p), want{"spec.ephemeralContainers", field.ErrorTypeForbidden, "cannot be set on create"})
}

func TestPodUpdate(t *testing.T) {
	old := validPod()
	old.Spec.ActiveDeadlineSeconds = ptrTo(int64(600))
	Default(old)
	allowed := map[string]func(p *corev1.Pod){
		"image":            func(p *corev1.Pod) { p.Spec.Containers[0].Image = "nginx:1.28" },
		"shorter deadline": func(p *corev1.Pod) { p.Spec.ActiveDeadlineSeconds = ptrTo(int64(300)) },
		"added toleration": func(p *corev1.Pod) {
			p.Spec.Tolerations = append(p.Spec.Tolerations, corev1.Toleration{Key: "a", Operator: "Exists"})
		},
		"toleration seconds": func(p *corev1.Pod) { p.Spec.Tolerations[0].TolerationSeconds = ptrTo(int64(10)) },
		"labels and annotations": func(p *corev1.Pod) {
			p.Labels = map[string]string{"a": "b"}
			p.Annotations = map[string]string{"c": "d"}
		},
	}
	for name, mutate := range allowed {
		t.Run(name, func(t *testing.T) {
			p := old.DeepCopy()
			mutate(p)
			expectErrors(t, ValidateUpdate(p, old))
		})
	}
	forbidden := []struct {
		name   string
		mutate func(p *corev1.Pod)
		want   want
	}{
		{"command", func(p *corev1.Pod) { p.Spec.Containers[0].Command = []string{"sh"} }, want{"spec", field.ErrorTypeForbidden, "pod updates may not change fields other than `spec.containers[*].image`"}},
		{"ports", func(p *corev1.Pod) { p.Spec.Containers[0].Ports = nil }, want{"spec", field.ErrorTypeForbidden, "core.PodSpec.Containers changed"}},
		{"add container", func(p *corev1.Pod) {
			p.Spec.Containers = append(p.Spec.Containers, p.Spec.Containers[0])
			p.Spec.Containers[1].Name = "two"
		}, want{"spec.containers", field.ErrorTypeForbidden, "pod updates may not add or remove containers"}},
		{"removed toleration", func(p *corev1.Pod) { p.Spec.Tolerations = nil }, want{"spec.tolerations", field.ErrorTypeForbidden, "existing toleration can not be modified except its tolerationSeconds"}},
		{"longer deadline", func(p *corev1.Pod) { p.Spec.ActiveDeadlineSeconds = ptrTo(int64(900)) }, want{"spec.activeDeadlineSeconds", field.ErrorTypeInvalid, "must be less than or equal to previous value"}},
		{"deadline removed", func(p *corev1.Pod) { p.Spec.ActiveDeadlineSeconds = nil }, want{"spec.activeDeadlineSeconds", field.ErrorTypeInvalid, "must not update from a positive integer to nil value"}},
		{"empty image", func(p *corev1.Pod) { p.Spec.Containers[0].Image = "" }, want{"spec.containers[0].image", field.ErrorTypeRequired, ""}},
	}
	for _, c := range forbidden {
		t.Run(c.name, func(t *testing.T) {
			p := old.DeepCopy()
			c.mutate(p)
			errs := ValidateUpdate(p, old)
			expectErrors(t, errs, c.want)
		})
	}
	// the full Kubernetes message is used
	p := old.DeepCopy()
	p.Spec.NodeName = "node-2"
	errs := ValidateUpdate(p, old)
	if len(errs) != 1 || !strings.HasPrefix(errs[0].Detail, podUpdateForbiddenMsg+"\n") || !strings.Contains(errs[0].Detail, "NodeName") {
		t.Errorf("unexpected %v", errs)
	}
}

func TestPodTemplateLabelsPath(t *testing.T) {
	d := validDeployment()
	d.Spec.Template.Labels["bad key"] = "x"
	Default(d)
	expectErrors(t, ValidateCreate(d), want{"spec.template.labels", field.ErrorTypeInvalid, ""})
}
