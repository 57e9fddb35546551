package validation

import (
	"encoding/json"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func equalJSON(t *testing.T, a, b interface{}) bool {
	t.Helper()
	ja, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	jb, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return string(ja) == string(jb)
}

func TestServiceDefaults(t *testing.T) {
	s := validService()
	Default(s)
	sp := s.Spec
	if sp.Type != corev1.ServiceTypeClusterIP || sp.SessionAffinity != corev1.ServiceAffinityNone {
		t.Errorf("type %q sessionAffinity %q", sp.Type, sp.SessionAffinity)
	}
	if sp.Ports[0].Protocol != corev1.ProtocolTCP || sp.Ports[0].TargetPort != intstr.FromInt32(80) || sp.Ports[1].TargetPort != intstr.FromString("https") {
		t.Errorf("ports %+v", sp.Ports)
	}
	if sp.IPFamilyPolicy == nil || *sp.IPFamilyPolicy != corev1.IPFamilyPolicySingleStack || len(sp.IPFamilies) != 1 || sp.IPFamilies[0] != corev1.IPv4Protocol {
		t.Errorf("ipFamilyPolicy %v ipFamilies %v", sp.IPFamilyPolicy, sp.IPFamilies)
	}
	if sp.InternalTrafficPolicy == nil || *sp.InternalTrafficPolicy != corev1.ServiceInternalTrafficPolicyCluster || sp.ExternalTrafficPolicy != "" {
		t.Errorf("internalTrafficPolicy %v externalTrafficPolicy %q", sp.InternalTrafficPolicy, sp.ExternalTrafficPolicy)
	}

	lb := validService()
	lb.Spec.Type = corev1.ServiceTypeLoadBalancer
	lb.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
	lb.Spec.ClusterIP = "10.96.0.10"
	Default(lb)
	if lb.Spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyCluster || lb.Spec.AllocateLoadBalancerNodePorts == nil ||
		*lb.Spec.SessionAffinityConfig.ClientIP.TimeoutSeconds != 10800 || lb.Spec.ClusterIPs[0] != "10.96.0.10" {
		t.Errorf("load balancer defaults %+v", lb.Spec)
	}
	expectErrors(t, ValidateCreate(lb))

	en := &corev1.Service{ObjectMeta: meta("db"), Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "db.example.com."}}
	Default(en)
	if en.Spec.IPFamilyPolicy != nil || en.Spec.InternalTrafficPolicy != nil {
		t.Errorf("ExternalName got IP defaults %+v", en.Spec)
	}
	expectErrors(t, ValidateCreate(en))

	headless := validService()
	headless.Spec.ClusterIP = "None"
	headless.Spec.Ports = nil
	Default(headless)
	expectErrors(t, ValidateCreate(headless))
}

func TestServiceValidation(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(s *corev1.Service)
		want   want
	}{
		{"name must be a label", func(s *corev1.Service) { s.Name = "web.svc" }, want{"metadata.name", field.ErrorTypeInvalid, "must not contain dots"}},
		{"name must be lowercase", func(s *corev1.Service) { s.Name = "Web" }, want{"metadata.name", field.ErrorTypeInvalid, "a lowercase RFC 1123 label must consist of"}},
		{"no ports", func(s *corev1.Service) { s.Spec.Ports = nil }, want{"spec.ports", field.ErrorTypeRequired, ""}},
		{"port name required when several", func(s *corev1.Service) { s.Spec.Ports[1].Name = "" }, want{"spec.ports[1].name", field.ErrorTypeRequired, ""}},
		{"duplicate port name", func(s *corev1.Service) { s.Spec.Ports[1].Name = "http" }, want{"spec.ports[1].name", field.ErrorTypeDuplicate, ""}},
		{"duplicate port", func(s *corev1.Service) { s.Spec.Ports[1].Port = 80 }, want{"spec.ports[1]", field.ErrorTypeDuplicate, ""}},
		{"bad port", func(s *corev1.Service) { s.Spec.Ports[0].Port = 0 }, want{"spec.ports[0].port", field.ErrorTypeInvalid, "must be between 1 and 65535, inclusive"}},
		{"bad protocol", func(s *corev1.Service) { s.Spec.Ports[0].Protocol = "HTTP" }, want{"spec.ports[0].protocol", field.ErrorTypeNotSupported, `supported values: "SCTP", "TCP", "UDP"`}},
		{"bad targetPort name", func(s *corev1.Service) { s.Spec.Ports[1].TargetPort = intstr.FromString("Not_OK") }, want{"spec.ports[1].targetPort", field.ErrorTypeInvalid, ""}},
		{"bad type", func(s *corev1.Service) { s.Spec.Type = "Magic" }, want{"spec.type", field.ErrorTypeNotSupported, ""}},
		{"bad selector", func(s *corev1.Service) { s.Spec.Selector = map[string]string{"app": "a b"} }, want{"spec.selector", field.ErrorTypeInvalid, ""}},
		{"bad sessionAffinity", func(s *corev1.Service) { s.Spec.SessionAffinity = "Cookie" }, want{"spec.sessionAffinity", field.ErrorTypeNotSupported, ""}},
		{"nodePort on ClusterIP", func(s *corev1.Service) { s.Spec.Ports[0].NodePort = 30080 }, want{"spec.ports[0].nodePort", field.ErrorTypeForbidden, "may not be used when `type` is 'ClusterIP'"}},
		{"nodePort out of range", func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeNodePort
			s.Spec.Ports[0].NodePort = 80
		}, want{"spec.ports[0].nodePort", field.ErrorTypeInvalid, "provided port is not in the valid range. The range of valid ports is 30000-32767"}},
		{"duplicate nodePort", func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeNodePort
			s.Spec.Ports[0].NodePort = 30080
			s.Spec.Ports[1].NodePort = 30080
		}, want{"spec.ports[1].nodePort", field.ErrorTypeDuplicate, ""}},
		{"headless NodePort", func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeNodePort
			s.Spec.ClusterIP = "None"
		}, want{"spec.clusterIP", field.ErrorTypeInvalid, "may not be set to 'None' for NodePort services"}},
		{"bad clusterIP", func(s *corev1.Service) { s.Spec.ClusterIP = "10.0.0.300" }, want{"spec.clusterIPs[0]", field.ErrorTypeInvalid, ""}},
		{"clusterIPs mismatch", func(s *corev1.Service) {
			s.Spec.ClusterIP = "10.96.0.1"
			s.Spec.ClusterIPs = []string{"10.96.0.2"}
		}, want{"spec.clusterIPs", field.ErrorTypeInvalid, "first value must match `clusterIP`"}},
		{"bad ipFamilyPolicy", func(s *corev1.Service) { s.Spec.IPFamilyPolicy = ptrTo(corev1.IPFamilyPolicy("Both")) }, want{"spec.ipFamilyPolicy", field.ErrorTypeNotSupported, ""}},
		{"ExternalName without name", func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeExternalName }, want{"spec.externalName", field.ErrorTypeRequired, ""}},
		{"externalTrafficPolicy on ClusterIP", func(s *corev1.Service) { s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal }, want{"spec.externalTrafficPolicy", field.ErrorTypeInvalid, "may only be set for externally-accessible services"}},
		{"ClientIP timeout", func(s *corev1.Service) {
			s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
			s.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: ptrTo(int32(0))}}
		}, want{"spec.sessionAffinityConfig.clientIP.timeoutSeconds", field.ErrorTypeInvalid, "must be greater than 0 and less than 86400"}},
		{"loopback externalIP", func(s *corev1.Service) { s.Spec.ExternalIPs = []string{"127.0.0.1"} }, want{"spec.externalIPs[0]", field.ErrorTypeInvalid, "may not be in the loopback range"}},
		{"kubelet port on LoadBalancer", func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeLoadBalancer
			s.Spec.Ports[0].Port = 10250
		}, want{"spec.ports[0]", field.ErrorTypeInvalid, "may not expose port 10250 externally since it is used by kubelet"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := validService()
			c.mutate(s)
			Default(s)
			expectErrors(t, ValidateCreate(s), c.want)
		})
	}
}

func TestServiceUpdate(t *testing.T) {
	old := validService()
	old.Spec.ClusterIP = "10.96.0.10"
	Default(old)

	s := old.DeepCopy()
	s.Spec.ClusterIP, s.Spec.ClusterIPs = "10.96.0.11", []string{"10.96.0.11"}
	expectErrors(t, ValidateUpdate(s, old), want{"spec.clusterIPs[0]", field.ErrorTypeInvalid, "may not change once set"})

	// a PUT without the allocated IP is refused, unless PrepareForUpdate patches it in
	s = validService()
	s.ResourceVersion = "3"
	s.UID = old.UID
	Default(s)
	expectErrors(t, ValidateUpdate(s, old), want{"spec.clusterIPs[0]", field.ErrorTypeInvalid, "primary clusterIP can not be unset"})
	s = validService()
	s.UID = old.UID
	PrepareForUpdate(s, old)
	Default(s)
	expectErrors(t, ValidateUpdate(s, old))
	if s.Spec.ClusterIP != "10.96.0.10" {
		t.Errorf("clusterIP not carried over: %q", s.Spec.ClusterIP)
	}

	// node ports are carried over by port name
	np := validService()
	np.Spec.Type = corev1.ServiceTypeNodePort
	np.Spec.ClusterIP = "10.96.0.12"
	np.Spec.Ports[0].NodePort, np.Spec.Ports[1].NodePort = 30080, 30443
	Default(np)
	s = validService()
	s.UID = old.UID
	s.Spec.Type = corev1.ServiceTypeNodePort
	PrepareForUpdate(s, np)
	Default(s)
	if s.Spec.Ports[0].NodePort != 30080 || s.Spec.Ports[1].NodePort != 30443 {
		t.Errorf("node ports not carried over: %+v", s.Spec.Ports)
	}
	expectErrors(t, ValidateUpdate(s, np))

	// switching to ExternalName drops the IP
	s = old.DeepCopy()
	s.Spec = corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "example.com"}
	Default(s)
	expectErrors(t, ValidateUpdate(s, old))
}

func TestNamespace(t *testing.T) {
	ns := &corev1.Namespace{ObjectMeta: clusterMeta("team-a")}
	Default(ns)
	if len(ns.Spec.Finalizers) != 1 || ns.Spec.Finalizers[0] != corev1.FinalizerKubernetes || ns.Status.Phase != corev1.NamespaceActive ||
		ns.Labels[corev1.LabelMetadataName] != "team-a" {
		t.Errorf("namespace defaults %+v", ns)
	}
	for _, c := range []struct {
		name string
		want want
	}{
		{"team.a", want{"metadata.name", field.ErrorTypeInvalid, "must not contain dots"}},
		{"Team", want{"metadata.name", field.ErrorTypeInvalid, "a lowercase RFC 1123 label must consist of"}},
		{strings.Repeat("a", 64), want{"metadata.name", field.ErrorTypeInvalid, "must be no more than 63 characters"}},
	} {
		ns := &corev1.Namespace{ObjectMeta: clusterMeta(c.name)}
		Default(ns)
		expectErrors(t, ValidateCreate(ns), c.want)
	}
	bad := &corev1.Namespace{ObjectMeta: clusterMeta("x"), Spec: corev1.NamespaceSpec{Finalizers: []corev1.FinalizerName{"custom"}}}
	Default(bad)
	expectErrors(t, ValidateCreate(bad), want{"spec.finalizers", field.ErrorTypeInvalid, "name is neither a standard finalizer name nor is it fully qualified"})

	// PrepareForUpdate keeps spec and status
	old := ns.DeepCopy()
	upd := &corev1.Namespace{ObjectMeta: *ns.ObjectMeta.DeepCopy()}
	PrepareForUpdate(upd, old)
	Default(upd)
	expectErrors(t, ValidateUpdate(upd, old))
	if upd.Status.Phase != corev1.NamespaceActive {
		t.Errorf("status not kept")
	}
}

func TestConfigMap(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(c *corev1.ConfigMap)
		want   want
	}{
		{"bad key", func(c *corev1.ConfigMap) { c.Data["a/b"] = "" }, want{"data[a/b]", field.ErrorTypeInvalid, "a valid config key must consist of alphanumeric characters, '-', '_' or '.'"}},
		{"bad binary key", func(c *corev1.ConfigMap) { c.BinaryData[".."] = nil }, want{"binaryData[..]", field.ErrorTypeInvalid, ""}},
		{"duplicate key", func(c *corev1.ConfigMap) { c.BinaryData["app.conf"] = nil }, want{"data[app.conf]", field.ErrorTypeInvalid, "duplicate of key present in binaryData"}},
		{"too big", func(c *corev1.ConfigMap) { c.Data["big"] = strings.Repeat("x", MaxSecretSize) }, want{"[]", field.ErrorTypeTooLong, "may not be more than 1048576 bytes"}},
		{"bad name", func(c *corev1.ConfigMap) { c.Name = "Cfg" }, want{"metadata.name", field.ErrorTypeInvalid, ""}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cm := validObjects()["ConfigMap"].(*corev1.ConfigMap)
			c.mutate(cm)
			Default(cm)
			errs := ValidateCreate(cm)
			expectErrors(t, errs, c.want)
		})
	}

	old := validObjects()["ConfigMap"].(*corev1.ConfigMap)
	old.Immutable = ptrTo(true)
	cm := old.DeepCopy()
	cm.Data["app.conf"] = "x=2"
	expectErrors(t, ValidateUpdate(cm, old), want{"data", field.ErrorTypeForbidden, "field is immutable when `immutable` is set"})
	cm = old.DeepCopy()
	cm.Immutable = ptrTo(false)
	expectErrors(t, ValidateUpdate(cm, old), want{"immutable", field.ErrorTypeForbidden, "field is immutable when `immutable` is set"})
	cm = old.DeepCopy()
	cm.Labels = map[string]string{"a": "b"}
	expectErrors(t, ValidateUpdate(cm, old))
	// a mutable config map may change
	old.Immutable = nil
	cm = old.DeepCopy()
	cm.Data["app.conf"] = "x=2"
	expectErrors(t, ValidateUpdate(cm, old))
}

func TestSecret(t *testing.T) {
	s := validObjects()["Secret"].(*corev1.Secret)
	Default(s)
	if s.Type != corev1.SecretTypeOpaque || string(s.Data["user"]) != "admin" || s.StringData != nil {
		t.Errorf("secret defaults %+v", s)
	}
	cases := []struct {
		name   string
		mutate func(s *corev1.Secret)
		want   want
	}{
		{"bad key", func(s *corev1.Secret) { s.Data["a b"] = nil }, want{"data[a b]", field.ErrorTypeInvalid, "a valid config key"}},
		{"too big", func(s *corev1.Secret) { s.Data["big"] = make([]byte, MaxSecretSize) }, want{"data", field.ErrorTypeTooLong, "may not be more than 1048576 bytes"}},
		{"tls without key", func(s *corev1.Secret) {
			s.Type = corev1.SecretTypeTLS
			s.Data = map[string][]byte{corev1.TLSCertKey: []byte("c")}
		}, want{"data[tls.key]", field.ErrorTypeRequired, ""}},
		{"dockerconfigjson not json", func(s *corev1.Secret) {
			s.Type = corev1.SecretTypeDockerConfigJson
			s.Data = map[string][]byte{corev1.DockerConfigJsonKey: []byte("{")}
		}, want{"data[.dockerconfigjson]", field.ErrorTypeInvalid, ""}},
		{"sa token without annotation", func(s *corev1.Secret) { s.Type = corev1.SecretTypeServiceAccountToken }, want{"metadata.annotations[kubernetes.io/service-account.name]", field.ErrorTypeRequired, ""}},
		{"basic auth empty", func(s *corev1.Secret) {
			s.Type = corev1.SecretTypeBasicAuth
			s.Data = nil
		}, want{"data[username]", field.ErrorTypeRequired, ""}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := validObjects()["Secret"].(*corev1.Secret)
			c.mutate(s)
			Default(s)
			expectErrors(t, ValidateCreate(s), c.want)
		})
	}
	old := validObjects()["Secret"].(*corev1.Secret)
	Default(old)
	s = old.DeepCopy()
	s.Type = corev1.SecretTypeBasicAuth
	expectErrors(t, ValidateUpdate(s, old), want{"type", field.ErrorTypeInvalid, "field is immutable"})
	old.Immutable = ptrTo(true)
	s = old.DeepCopy()
	s.Data["password"] = []byte("x")
	expectErrors(t, ValidateUpdate(s, old), want{"data", field.ErrorTypeForbidden, "field is immutable when `immutable` is set"})
}

func TestNodeEndpointsEventsServiceAccounts(t *testing.T) {
	objs := validObjects()

	n := objs["Node"].(*corev1.Node)
	n.Spec.Taints = append(n.Spec.Taints, corev1.Taint{Key: "x", Effect: "Sometimes"}, corev1.Taint{Key: "dedicated", Effect: corev1.TaintEffectNoSchedule})
	Default(n)
	expectErrors(t, ValidateCreate(n),
		want{"spec.taints[1].effect", field.ErrorTypeNotSupported, ""},
		want{"spec.taints[2]", field.ErrorTypeDuplicate, "taints must be unique by key and effect pair"})
	old := objs["Node"].(*corev1.Node)
	Default(old)
	n = old.DeepCopy()
	n.Spec.PodCIDR, n.Spec.PodCIDRs = "10.244.2.0/24", []string{"10.244.2.0/24"}
	expectErrors(t, ValidateUpdate(n, old), want{"spec.podCIDRs", field.ErrorTypeForbidden, "node updates may not change podCIDR except from \"\" to valid"})

	ep := objs["Endpoints"].(*corev1.Endpoints)
	ep.Subsets = append(ep.Subsets, corev1.EndpointSubset{}, corev1.EndpointSubset{Addresses: []corev1.EndpointAddress{{IP: "127.0.0.1"}}, Ports: []corev1.EndpointPort{{Port: 0}}})
	Default(ep)
	if ep.Subsets[0].Ports[0].Protocol != corev1.ProtocolTCP {
		t.Errorf("endpoint port protocol not defaulted")
	}
	expectErrors(t, ValidateCreate(ep),
		want{"subsets[1]", field.ErrorTypeRequired, "must specify `addresses` or `notReadyAddresses`"},
		want{"subsets[2].addresses[0].ip", field.ErrorTypeInvalid, "may not be in the loopback range"},
		want{"subsets[2].ports[0].port", field.ErrorTypeInvalid, ""})

	ev := objs["Event"].(*corev1.Event)
	ev.InvolvedObject.Namespace = "other"
	expectErrors(t, ValidateCreate(ev), want{"involvedObject.namespace", field.ErrorTypeInvalid, "does not match event.namespace"})
	ev = objs["Event"].(*corev1.Event)
	ev.EventTime = metav1.NewMicroTime(metav1.Now().Time)
	expectErrors(t, ValidateCreate(ev), want{"source", field.ErrorTypeRequired, ""}, want{"action", field.ErrorTypeRequired, ""}, want{"reportingInstance", field.ErrorTypeRequired, ""})

	sa := objs["ServiceAccount"].(*corev1.ServiceAccount)
	sa.Name = "Builder"
	expectErrors(t, ValidateCreate(sa), want{"metadata.name", field.ErrorTypeInvalid, ""})
}
