package validation

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Service validation, ported by hand from kubernetes
// pkg/apis/core/validation (ValidateService, validateServicePort,
// validateServiceClusterIPsRelatedFields, ValidateServiceUpdate,
// validateUpgradeDowngradeClusterIPs) plus the node-port range check of the
// service REST allocator.

// Service names are RFC 1123 labels (Kubernetes' RelaxedServiceNameValidation;
// without it they are RFC 1035 labels).
var validateServiceName = apivalidation.NameIsDNSLabel

// NodePortRange is the range node ports are allocated from and must lie in.
var NodePortRange = struct{ Base, Size int }{30000, 2768}

const (
	kubeletPort                       = 10250
	maxClientIPServiceAffinitySeconds = 86400
)

func validateService(s *corev1.Service) field.ErrorList {
	errs := validateObjectMeta(&s.ObjectMeta, true, validateServiceName)
	return append(errs, validateServiceSpec(s)...)
}

func isHeadlessService(s *corev1.Service) bool { return s.Spec.ClusterIP == corev1.ClusterIPNone }

func externallyAccessible(s *corev1.Service) bool {
	return s.Spec.Type == corev1.ServiceTypeLoadBalancer || s.Spec.Type == corev1.ServiceTypeNodePort ||
		(s.Spec.Type == corev1.ServiceTypeClusterIP && len(s.Spec.ExternalIPs) > 0)
}

func validateServiceSpec(s *corev1.Service) field.ErrorList {
	var errs field.ErrorList
	sp := &s.Spec
	specPath := field.NewPath("spec")
	portsPath := specPath.Child("ports")
	headless := isHeadlessService(s)

	if len(sp.Ports) == 0 && !headless && sp.Type != corev1.ServiceTypeExternalName {
		errs = append(errs, field.Required(portsPath, ""))
	}
	switch sp.Type {
	case corev1.ServiceTypeLoadBalancer:
		for i := range sp.Ports {
			if sp.Ports[i].Port == kubeletPort {
				errs = append(errs, field.Invalid(portsPath.Index(i), sp.Ports[i].Port, fmt.Sprintf("may not expose port %v externally since it is used by kubelet", kubeletPort)))
			}
		}
		if headless {
			errs = append(errs, field.Invalid(specPath.Child("clusterIP"), sp.ClusterIP, "may not be set to 'None' for LoadBalancer services"))
		}
	case corev1.ServiceTypeNodePort:
		if headless {
			errs = append(errs, field.Invalid(specPath.Child("clusterIP"), sp.ClusterIP, "may not be set to 'None' for NodePort services"))
		}
	case corev1.ServiceTypeExternalName:
		if sp.ClusterIP != "" {
			errs = append(errs, field.Forbidden(specPath.Child("clusterIP"), "may not be set for ExternalName services"))
		}
		if len(sp.ClusterIPs) > 0 {
			errs = append(errs, field.Forbidden(specPath.Child("clusterIPs"), "may not be set for ExternalName services"))
		}
		if len(sp.IPFamilies) > 0 {
			errs = append(errs, field.Forbidden(specPath.Child("ipFamilies"), "may not be set for ExternalName services"))
		}
		if sp.IPFamilyPolicy != nil {
			errs = append(errs, field.Forbidden(specPath.Child("ipFamilyPolicy"), "may not be set for ExternalName services"))
		}
		if cname := strings.TrimSuffix(sp.ExternalName, "."); cname != "" {
			errs = append(errs, validateDNS1123Subdomain(cname, specPath.Child("externalName"))...)
		} else {
			errs = append(errs, field.Required(specPath.Child("externalName"), ""))
		}
	}

	names := map[string]bool{}
	for i := range sp.Ports {
		errs = append(errs, validateServicePort(&sp.Ports[i], len(sp.Ports) > 1, names, portsPath.Index(i))...)
	}

	if sp.Selector != nil {
		errs = append(errs, metav1validation.ValidateLabels(sp.Selector, specPath.Child("selector"))...)
	}

	switch sp.SessionAffinity {
	case "":
		errs = append(errs, field.Required(specPath.Child("sessionAffinity"), ""))
	case corev1.ServiceAffinityClientIP:
		errs = append(errs, validateClientIPAffinityConfig(sp.SessionAffinityConfig, specPath.Child("sessionAffinityConfig"))...)
	case corev1.ServiceAffinityNone:
		if sp.SessionAffinityConfig != nil {
			errs = append(errs, field.Forbidden(specPath.Child("sessionAffinityConfig"), fmt.Sprintf("must not be set when session affinity is %s", corev1.ServiceAffinityNone)))
		}
	default:
		errs = append(errs, field.NotSupported(specPath.Child("sessionAffinity"), sp.SessionAffinity,
			[]corev1.ServiceAffinity{corev1.ServiceAffinityClientIP, corev1.ServiceAffinityNone}))
	}

	errs = append(errs, validateServiceClusterIPs(s)...)

	for i, ip := range sp.ExternalIPs {
		p := specPath.Child("externalIPs").Index(i)
		if el := validation.IsValidIPForLegacyField(p, ip, true, nil); len(el) > 0 {
			errs = append(errs, el...)
		} else {
			errs = append(errs, validateNonSpecialIP(ip, p)...)
		}
	}

	switch sp.Type {
	case corev1.ServiceTypeClusterIP, corev1.ServiceTypeNodePort, corev1.ServiceTypeLoadBalancer, corev1.ServiceTypeExternalName:
	case "":
		errs = append(errs, field.Required(specPath.Child("type"), ""))
	default:
		errs = append(errs, field.NotSupported(specPath.Child("type"), sp.Type, []corev1.ServiceType{corev1.ServiceTypeClusterIP,
			corev1.ServiceTypeExternalName, corev1.ServiceTypeLoadBalancer, corev1.ServiceTypeNodePort}))
	}

	if sp.Type == corev1.ServiceTypeClusterIP {
		for i := range sp.Ports {
			if sp.Ports[i].NodePort != 0 {
				errs = append(errs, field.Forbidden(portsPath.Index(i).Child("nodePort"), "may not be used when `type` is 'ClusterIP'"))
			}
		}
	}

	// Node ports: in range (the allocator's check), unique per protocol.
	nodePorts := map[corev1.ServicePort]bool{}
	for i, p := range sp.Ports {
		if p.NodePort == 0 {
			continue
		}
		npPath := portsPath.Index(i).Child("nodePort")
		if sp.Type == corev1.ServiceTypeNodePort || sp.Type == corev1.ServiceTypeLoadBalancer {
			if int(p.NodePort) < NodePortRange.Base || int(p.NodePort) >= NodePortRange.Base+NodePortRange.Size {
				errs = append(errs, field.Invalid(npPath, p.NodePort, fmt.Sprintf("provided port is not in the valid range. The range of valid ports is %d-%d",
					NodePortRange.Base, NodePortRange.Base+NodePortRange.Size-1)))
			}
		}
		key := corev1.ServicePort{Protocol: p.Protocol, NodePort: p.NodePort}
		if nodePorts[key] {
			errs = append(errs, field.Duplicate(npPath, p.NodePort))
		}
		nodePorts[key] = true
	}

	// Ports unique per (protocol, port).
	seen := map[corev1.ServicePort]bool{}
	for i, p := range sp.Ports {
		key := corev1.ServicePort{Protocol: p.Protocol, Port: p.Port}
		if seen[key] {
			errs = append(errs, field.Duplicate(portsPath.Index(i), key))
		}
		seen[key] = true
	}

	if len(sp.LoadBalancerSourceRanges) > 0 {
		p := specPath.Child("LoadBalancerSourceRanges")
		if sp.Type != corev1.ServiceTypeLoadBalancer {
			errs = append(errs, field.Forbidden(p, "may only be used when `type` is 'LoadBalancer'"))
		}
		for i, r := range sp.LoadBalancerSourceRanges {
			errs = append(errs, validation.IsValidCIDRForLegacyField(specPath.Child("loadBalancerSourceRanges").Index(i), strings.TrimSpace(r), true, nil)...)
		}
	}

	etpPath := specPath.Child("externalTrafficPolicy")
	if externallyAccessible(s) {
		switch sp.ExternalTrafficPolicy {
		case corev1.ServiceExternalTrafficPolicyCluster, corev1.ServiceExternalTrafficPolicyLocal:
		case "":
			errs = append(errs, field.Required(etpPath, ""))
		default:
			errs = append(errs, field.NotSupported(etpPath, sp.ExternalTrafficPolicy,
				[]corev1.ServiceExternalTrafficPolicy{corev1.ServiceExternalTrafficPolicyCluster, corev1.ServiceExternalTrafficPolicyLocal}))
		}
	} else if sp.ExternalTrafficPolicy != "" {
		errs = append(errs, field.Invalid(etpPath, sp.ExternalTrafficPolicy, "may only be set for externally-accessible services"))
	}
	if sp.HealthCheckNodePort != 0 {
		p := specPath.Child("healthCheckNodePort")
		if sp.Type != corev1.ServiceTypeLoadBalancer || sp.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyLocal {
			errs = append(errs, field.Invalid(p, sp.HealthCheckNodePort, "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'"))
		} else {
			for _, msg := range validation.IsValidPortNum(int(sp.HealthCheckNodePort)) {
				errs = append(errs, field.Invalid(p, sp.HealthCheckNodePort, msg))
			}
		}
	}

	itpPath := specPath.Child("internalTrafficPolicy")
	if sp.InternalTrafficPolicy == nil {
		if sp.Type == corev1.ServiceTypeNodePort || sp.Type == corev1.ServiceTypeLoadBalancer || sp.Type == corev1.ServiceTypeClusterIP {
			errs = append(errs, field.Required(itpPath, ""))
		}
	} else if p := *sp.InternalTrafficPolicy; p != corev1.ServiceInternalTrafficPolicyCluster && p != corev1.ServiceInternalTrafficPolicyLocal {
		errs = append(errs, field.NotSupported(itpPath, p, []corev1.ServiceInternalTrafficPolicy{corev1.ServiceInternalTrafficPolicyCluster, corev1.ServiceInternalTrafficPolicyLocal}))
	}

	alnpPath := specPath.Child("allocateLoadBalancerNodePorts")
	if sp.Type == corev1.ServiceTypeLoadBalancer {
		if sp.AllocateLoadBalancerNodePorts == nil {
			errs = append(errs, field.Required(alnpPath, ""))
		}
	} else if sp.AllocateLoadBalancerNodePorts != nil {
		errs = append(errs, field.Forbidden(alnpPath, "may only be used when `type` is 'LoadBalancer'"))
	}
	if sp.LoadBalancerClass != nil {
		p := specPath.Child("loadBalancerClass")
		if sp.Type != corev1.ServiceTypeLoadBalancer {
			errs = append(errs, field.Forbidden(p, "may only be used when `type` is 'LoadBalancer'"))
		} else {
			errs = append(errs, validateQualifiedName(*sp.LoadBalancerClass, p)...)
		}
	}
	return errs
}

func validateServicePort(sp *corev1.ServicePort, requireName bool, names map[string]bool, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	if requireName && sp.Name == "" {
		errs = append(errs, field.Required(fldPath.Child("name"), ""))
	} else if sp.Name != "" {
		errs = append(errs, validateDNS1123Label(sp.Name, fldPath.Child("name"))...)
		if names[sp.Name] {
			errs = append(errs, field.Duplicate(fldPath.Child("name"), sp.Name))
		}
		names[sp.Name] = true
	}
	for _, msg := range validation.IsValidPortNum(int(sp.Port)) {
		errs = append(errs, field.Invalid(fldPath.Child("port"), sp.Port, msg))
	}
	if sp.Protocol == "" {
		errs = append(errs, field.Required(fldPath.Child("protocol"), ""))
	} else if !isSupportedProtocol(sp.Protocol) {
		errs = append(errs, field.NotSupported(fldPath.Child("protocol"), sp.Protocol, supportedPortProtocols))
	}
	errs = append(errs, validatePortNumOrName(sp.TargetPort, fldPath.Child("targetPort"))...)
	if sp.AppProtocol != nil {
		errs = append(errs, validateQualifiedName(*sp.AppProtocol, fldPath.Child("appProtocol"))...)
	}
	return errs
}

func validateClientIPAffinityConfig(c *corev1.SessionAffinityConfig, fldPath *field.Path) field.ErrorList {
	msg := fmt.Sprintf("when session affinity type is %s", corev1.ServiceAffinityClientIP)
	switch {
	case c == nil:
		return field.ErrorList{field.Required(fldPath, msg)}
	case c.ClientIP == nil:
		return field.ErrorList{field.Required(fldPath.Child("clientIP"), msg)}
	case c.ClientIP.TimeoutSeconds == nil:
		return field.ErrorList{field.Required(fldPath.Child("clientIP").Child("timeoutSeconds"), msg)}
	}
	if t := *c.ClientIP.TimeoutSeconds; t <= 0 || t > maxClientIPServiceAffinitySeconds {
		return field.ErrorList{field.Invalid(fldPath.Child("clientIP").Child("timeoutSeconds"), t,
			fmt.Sprintf("must be greater than 0 and less than %d", maxClientIPServiceAffinitySeconds))}
	}
	return nil
}

func validateServiceClusterIPs(s *corev1.Service) field.ErrorList {
	sp := &s.Spec
	if sp.Type == corev1.ServiceTypeExternalName {
		return nil
	}
	var errs field.ErrorList
	specPath := field.NewPath("spec")
	ipsPath := specPath.Child("clusterIPs")
	famPath := specPath.Child("ipFamilies")

	if sp.ClusterIP != "" {
		if len(sp.ClusterIPs) == 0 {
			errs = append(errs, field.Required(ipsPath, ""))
		} else if sp.ClusterIPs[0] != sp.ClusterIP {
			errs = append(errs, field.Invalid(ipsPath, sp.ClusterIPs, "first value must match `clusterIP`"))
		}
	} else if len(sp.ClusterIPs) != 0 {
		errs = append(errs, field.Invalid(ipsPath, sp.ClusterIPs, "must be empty when `clusterIP` is not specified"))
	}

	seen := map[corev1.IPFamily]bool{}
	for i, f := range sp.IPFamilies {
		if f != corev1.IPv4Protocol && f != corev1.IPv6Protocol {
			errs = append(errs, field.NotSupported(famPath.Index(i), f, []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}))
		}
		if seen[f] {
			errs = append(errs, field.Duplicate(famPath.Index(i), f))
		}
		seen[f] = true
	}
	if len(sp.IPFamilies) > 2 {
		errs = append(errs, field.Invalid(famPath, sp.IPFamilies, "may only hold up to 2 values"))
	}
	if p := sp.IPFamilyPolicy; p != nil {
		switch *p {
		case corev1.IPFamilyPolicySingleStack, corev1.IPFamilyPolicyPreferDualStack, corev1.IPFamilyPolicyRequireDualStack:
		default:
			errs = append(errs, field.NotSupported(specPath.Child("ipFamilyPolicy"), *p, []corev1.IPFamilyPolicy{
				corev1.IPFamilyPolicyPreferDualStack, corev1.IPFamilyPolicyRequireDualStack, corev1.IPFamilyPolicySingleStack}))
		}
		if *p == corev1.IPFamilyPolicySingleStack && len(sp.IPFamilies) > 1 {
			errs = append(errs, field.Invalid(famPath, sp.IPFamilies, "when `ipFamilyPolicy` is 'SingleStack', must contain only one value"))
		}
	}

	invalid := false
	for i, ip := range sp.ClusterIPs {
		if i == 0 && ip == corev1.ClusterIPNone {
			if len(sp.ClusterIPs) > 1 {
				invalid = true
				errs = append(errs, field.Invalid(ipsPath, sp.ClusterIPs, "'None' must be the first and only value"))
			}
			continue
		}
		if el := validation.IsValidIPForLegacyField(ipsPath.Index(i), ip, true, nil); len(el) > 0 {
			invalid = true
			errs = append(errs, el...)
		}
	}
	if len(sp.ClusterIPs) > 2 {
		errs = append(errs, field.Invalid(ipsPath, sp.ClusterIPs, "may only hold up to 2 values"))
	}
	if invalid {
		return errs
	}
	if len(sp.ClusterIPs) == 2 && ipFamilyOf(sp.ClusterIPs[0]) == ipFamilyOf(sp.ClusterIPs[1]) {
		errs = append(errs, field.Invalid(ipsPath, sp.ClusterIPs, "may specify no more than one IP for each IP family"))
	}
	if !isHeadlessService(s) {
		for i, ip := range sp.ClusterIPs {
			if i >= len(sp.IPFamilies) {
				break
			}
			if f := ipFamilyOf(ip); f != sp.IPFamilies[i] {
				errs = append(errs, field.Invalid(ipsPath.Index(i), ip, fmt.Sprintf("expected an %s value as indicated by `ipFamilies[%v]`", sp.IPFamilies[i], i)))
			}
		}
	}
	return errs
}

// validateServiceUpdate is ValidateServiceUpdate: allocated cluster IPs and
// IP families may not change (except to, from or on ExternalName).
func validateServiceUpdate(s, old *corev1.Service) field.ErrorList {
	errs := validateObjectMetaUpdate(&s.ObjectMeta, &old.ObjectMeta)
	errs = append(errs, validateUpgradeDowngradeClusterIPs(old, s)...)
	errs = append(errs, validateUpgradeDowngradeIPFamilies(old, s)...)
	if old.Spec.Type == corev1.ServiceTypeLoadBalancer && s.Spec.Type == corev1.ServiceTypeLoadBalancer {
		errs = append(errs, validateImmutable(s.Spec.LoadBalancerClass, old.Spec.LoadBalancerClass, field.NewPath("spec", "loadBalancerClass"))...)
	}
	return append(errs, validateServiceSpec(s)...)
}

func validateUpgradeDowngradeClusterIPs(old, s *corev1.Service) field.ErrorList {
	if s.Spec.Type == corev1.ServiceTypeExternalName || old.Spec.Type == corev1.ServiceTypeExternalName {
		return nil
	}
	if isHeadlessService(old) && isHeadlessService(s) {
		return nil
	}
	var errs field.ErrorList
	p := field.NewPath("spec", "clusterIPs")
	oldIPs, newIPs := old.Spec.ClusterIPs, s.Spec.ClusterIPs
	switch {
	case len(oldIPs) == len(newIPs):
		for i, ip := range oldIPs {
			if ip != newIPs[i] {
				errs = append(errs, field.Invalid(p.Index(i), newIPs, "may not change once set"))
			}
		}
	case len(oldIPs) > len(newIPs):
		if len(newIPs) == 0 {
			errs = append(errs, field.Invalid(p.Index(0), newIPs, "primary clusterIP can not be unset"))
		}
		if len(oldIPs) > 0 && len(newIPs) > 0 && newIPs[0] != oldIPs[0] {
			errs = append(errs, field.Invalid(p.Index(0), newIPs, "may not change once set"))
		}
		if len(newIPs) == 1 && (s.Spec.IPFamilyPolicy == nil || *s.Spec.IPFamilyPolicy != corev1.IPFamilyPolicySingleStack) {
			errs = append(errs, field.Invalid(field.NewPath("spec", "ipFamilyPolicy"), s.Spec.IPFamilyPolicy, "must be set to 'SingleStack' when releasing the secondary clusterIP"))
		}
	case len(oldIPs) > 0 && newIPs[0] != oldIPs[0]:
		errs = append(errs, field.Invalid(p.Index(0), newIPs, "may not change once set"))
	}
	return errs
}

func validateUpgradeDowngradeIPFamilies(old, s *corev1.Service) field.ErrorList {
	if s.Spec.Type == corev1.ServiceTypeExternalName || old.Spec.Type == corev1.ServiceTypeExternalName {
		return nil
	}
	if isHeadlessService(old) && isHeadlessService(s) {
		return nil
	}
	var errs field.ErrorList
	p := field.NewPath("spec", "ipFamilies")
	oldF, newF := old.Spec.IPFamilies, s.Spec.IPFamilies
	switch {
	case len(oldF) == len(newF):
		for i := range oldF {
			if oldF[i] != newF[i] {
				errs = append(errs, field.Invalid(p.Index(0), newF, "may not change once set"))
			}
		}
	case len(oldF) > len(newF):
		if len(newF) == 0 {
			errs = append(errs, field.Invalid(p.Index(0), newF, "primary ipFamily can not be unset"))
		} else if newF[0] != oldF[0] {
			errs = append(errs, field.Invalid(p.Index(0), newF, "may not change once set"))
		}
	case len(oldF) > 0 && newF[0] != oldF[0]:
		errs = append(errs, field.Invalid(p.Index(0), newF, "may not change once set"))
	}
	return errs
}
