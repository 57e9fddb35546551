package validation

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// EndpointSlice defaulting and validation, ported by hand from kubernetes
// pkg/apis/discovery/v1/defaults.go and pkg/apis/discovery/validation.

const (
	maxEndpointSliceAddresses = 100
	maxEndpointSlicePorts     = 20000
	maxEndpointSliceEndpoints = 1000
	maxTopologyLabels         = 16
	maxZoneHints              = 8
)

var supportedAddressTypes = []discoveryv1.AddressType{discoveryv1.AddressTypeFQDN, discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6}

func defaultEndpointSlice(es *discoveryv1.EndpointSlice) {
	for i := range es.Ports {
		if es.Ports[i].Name == nil {
			es.Ports[i].Name = ptrTo("")
		}
		if es.Ports[i].Protocol == nil {
			es.Ports[i].Protocol = ptrTo(corev1.ProtocolTCP)
		}
	}
}

func validateEndpointSlice(es *discoveryv1.EndpointSlice) field.ErrorList {
	errs := validateObjectMeta(&es.ObjectMeta, true, apivalidation.NameIsDNSSubdomain)
	return append(errs, validateEndpointSliceBody(es)...)
}

func validateEndpointSliceUpdate(es, old *discoveryv1.EndpointSlice) field.ErrorList {
	errs := validateObjectMetaUpdate(&es.ObjectMeta, &old.ObjectMeta)
	errs = append(errs, validateEndpointSliceBody(es)...)
	for _, t := range supportedAddressTypes {
		if old.AddressType == t {
			errs = append(errs, validateImmutable(es.AddressType, old.AddressType, field.NewPath("addressType"))...)
		}
	}
	return errs
}

func validateEndpointSliceBody(es *discoveryv1.EndpointSlice) field.ErrorList {
	var errs field.ErrorList
	atPath := field.NewPath("addressType")
	supported := false
	for _, t := range supportedAddressTypes {
		supported = supported || es.AddressType == t
	}
	if es.AddressType == "" {
		errs = append(errs, field.Required(atPath, ""))
	} else if !supported {
		errs = append(errs, field.NotSupported(atPath, es.AddressType, supportedAddressTypes))
	}
	errs = append(errs, validateSliceEndpoints(es.Endpoints, es.AddressType, field.NewPath("endpoints"))...)
	return append(errs, validateSlicePorts(es.Ports, field.NewPath("ports"))...)
}

func validateSliceEndpoints(eps []discoveryv1.Endpoint, at discoveryv1.AddressType, fldPath *field.Path) field.ErrorList {
	if len(eps) > maxEndpointSliceEndpoints {
		return field.ErrorList{field.TooMany(fldPath, len(eps), maxEndpointSliceEndpoints)}
	}
	var errs field.ErrorList
	for i, ep := range eps {
		idxPath := fldPath.Index(i)
		addrPath := idxPath.Child("addresses")
		if len(ep.Addresses) == 0 {
			errs = append(errs, field.Required(addrPath, "must contain at least 1 address"))
		} else if len(ep.Addresses) > maxEndpointSliceAddresses {
			errs = append(errs, field.TooMany(addrPath, len(ep.Addresses), maxEndpointSliceAddresses))
		}
		for j, a := range ep.Addresses {
			p := addrPath.Index(j)
			switch at {
			case discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6:
				el := validation.IsValidIPForLegacyField(p, a, true, nil)
				if len(el) == 0 && string(ipFamilyOf(a)) != string(at) {
					el = append(el, field.Invalid(p, a, fmt.Sprintf("must be a valid %s address", at)))
				}
				errs = append(errs, el...)
			case discoveryv1.AddressTypeFQDN:
				errs = append(errs, validation.IsFullyQualifiedDomainName(p, a)...)
			}
		}
		if ep.NodeName != nil {
			for _, msg := range apivalidation.NameIsDNSSubdomain(*ep.NodeName, false) {
				errs = append(errs, field.Invalid(idxPath.Child("nodeName"), *ep.NodeName, msg))
			}
		}
		topoPath := idxPath.Child("deprecatedTopology")
		if len(ep.DeprecatedTopology) > maxTopologyLabels {
			errs = append(errs, field.TooMany(topoPath, len(ep.DeprecatedTopology), maxTopologyLabels))
		}
		errs = append(errs, metav1validation.ValidateLabels(ep.DeprecatedTopology, topoPath)...)
		if ep.Hostname != nil {
			errs = append(errs, validateDNS1123Label(*ep.Hostname, idxPath.Child("hostname"))...)
		}
		if ep.Hints != nil {
			zPath := idxPath.Child("hints", "forZones")
			if len(ep.Hints.ForZones) > maxZoneHints {
				errs = append(errs, field.TooMany(zPath, len(ep.Hints.ForZones), maxZoneHints))
			}
			seen := map[string]bool{}
			for j, z := range ep.Hints.ForZones {
				if seen[z.Name] {
					errs = append(errs, field.Duplicate(zPath.Index(j).Child("name"), z.Name))
				}
				seen[z.Name] = true
				for _, msg := range validation.IsValidLabelValue(z.Name) {
					errs = append(errs, field.Invalid(zPath.Index(j).Child("name"), z.Name, msg))
				}
			}
		}
	}
	return errs
}

func validateSlicePorts(ports []discoveryv1.EndpointPort, fldPath *field.Path) field.ErrorList {
	if len(ports) > maxEndpointSlicePorts {
		return field.ErrorList{field.TooMany(fldPath, len(ports), maxEndpointSlicePorts)}
	}
	var errs field.ErrorList
	names := map[string]bool{}
	for i, p := range ports {
		idxPath := fldPath.Index(i)
		name := ""
		if p.Name != nil {
			name = *p.Name
		}
		if name != "" {
			errs = append(errs, validateDNS1123Label(name, idxPath.Child("name"))...)
		}
		if names[name] {
			errs = append(errs, field.Duplicate(idxPath.Child("name"), name))
		}
		names[name] = true
		if p.Protocol == nil {
			errs = append(errs, field.Required(idxPath.Child("protocol"), ""))
		} else if !isSupportedProtocol(*p.Protocol) {
			errs = append(errs, field.NotSupported(idxPath.Child("protocol"), *p.Protocol, supportedPortProtocols))
		}
		if p.Port != nil {
			for _, msg := range validation.IsInRange(int(*p.Port), 0, 65535) {
				errs = append(errs, field.Invalid(idxPath.Child("port"), *p.Port, msg))
			}
		}
		if p.AppProtocol != nil {
			errs = append(errs, validateQualifiedName(*p.AppProtocol, idxPath.Child("appProtocol"))...)
		}
	}
	return errs
}
