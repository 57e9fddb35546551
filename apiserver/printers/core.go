package printers

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/sets"
)

// Printers for the core ("") group, except Pod (pod.go).

const (
	loadBalancerWidth = 16
	// labelNodeRolePrefix is a label prefix for node roles.
	labelNodeRolePrefix = "node-role.kubernetes.io/"
	// nodeLabelRole specifies the role of a node.
	nodeLabelRole = "kubernetes.io/role"
)

func init() {
	register("Namespace", []metav1.TableColumnDefinition{
		nameColumn(),
		column("Status", "string", "The status of the namespace"),
		ageColumn(),
	}, func(ns *corev1.Namespace, now time.Time) []interface{} {
		return []interface{}{ns.Name, string(ns.Status.Phase), translateTimestampSince(ns.CreationTimestamp, now)}
	})

	nodeInfoDoc, nodeStatusDoc := corev1.NodeSystemInfo{}.SwaggerDoc(), corev1.NodeStatus{}.SwaggerDoc()
	register("Node", []metav1.TableColumnDefinition{
		nameColumn(),
		column("Status", "string", "The status of the node"),
		column("Roles", "string", "The roles of the node"),
		ageColumn(),
		column("Version", "string", nodeInfoDoc["kubeletVersion"]),
		wide("Internal-IP", "string", nodeStatusDoc["addresses"]),
		wide("External-IP", "string", nodeStatusDoc["addresses"]),
		wide("OS-Image", "string", nodeInfoDoc["osImage"]),
		wide("Kernel-Version", "string", nodeInfoDoc["kernelVersion"]),
		wide("Container-Runtime", "string", nodeInfoDoc["containerRuntimeVersion"]),
	}, nodeRow)

	svcDoc := corev1.ServiceSpec{}.SwaggerDoc()
	register("Service", []metav1.TableColumnDefinition{
		nameColumn(),
		column("Type", "string", svcDoc["type"]),
		column("Cluster-IP", "string", svcDoc["clusterIP"]),
		column("External-IP", "string", svcDoc["externalIPs"]),
		column("Port(s)", "string", svcDoc["ports"]),
		ageColumn(),
		wide("Selector", "string", svcDoc["selector"]),
	}, serviceRow)

	register("Endpoints", []metav1.TableColumnDefinition{
		nameColumn(),
		column("Endpoints", "string", corev1.Endpoints{}.SwaggerDoc()["subsets"]),
		ageColumn(),
	}, func(ep *corev1.Endpoints, now time.Time) []interface{} {
		return []interface{}{ep.Name, formatEndpoints(ep), translateTimestampSince(ep.CreationTimestamp, now)}
	})

	evDoc := corev1.Event{}.SwaggerDoc()
	name := nameColumn()
	name.Priority = 1
	register("Event", []metav1.TableColumnDefinition{
		column("Last Seen", "string", evDoc["lastTimestamp"]),
		column("Type", "string", evDoc["type"]),
		column("Reason", "string", evDoc["reason"]),
		column("Object", "string", evDoc["involvedObject"]),
		wide("Subobject", "string", corev1.ObjectReference{}.SwaggerDoc()["fieldPath"]),
		wide("Source", "string", evDoc["source"]),
		column("Message", "string", evDoc["message"]),
		wide("First Seen", "string", evDoc["firstTimestamp"]),
		wide("Count", "string", evDoc["count"]),
		name,
	}, eventRow)

	register("ConfigMap", []metav1.TableColumnDefinition{
		nameColumn(),
		column("Data", "string", corev1.ConfigMap{}.SwaggerDoc()["data"]),
		ageColumn(),
	}, func(cm *corev1.ConfigMap, now time.Time) []interface{} {
		return []interface{}{cm.Name, int64(len(cm.Data) + len(cm.BinaryData)), translateTimestampSince(cm.CreationTimestamp, now)}
	})

	secretDoc := corev1.Secret{}.SwaggerDoc()
	register("Secret", []metav1.TableColumnDefinition{
		nameColumn(),
		column("Type", "string", secretDoc["type"]),
		column("Data", "string", secretDoc["data"]),
		ageColumn(),
	}, func(s *corev1.Secret, now time.Time) []interface{} {
		// kube-apiserver merges stringData into data before storing; count
		// the union in case a stored object still carries stringData.
		keys := len(s.Data)
		for k := range s.StringData {
			if _, ok := s.Data[k]; !ok {
				keys++
			}
		}
		return []interface{}{s.Name, string(s.Type), int64(keys), translateTimestampSince(s.CreationTimestamp, now)}
	})

	// Kubernetes 1.32 still prints SECRETS (dropped upstream in 1.35 by
	// kubernetes#117160).
	register("ServiceAccount", []metav1.TableColumnDefinition{
		nameColumn(),
		column("Secrets", "string", corev1.ServiceAccount{}.SwaggerDoc()["secrets"]),
		ageColumn(),
	}, func(sa *corev1.ServiceAccount, now time.Time) []interface{} {
		return []interface{}{sa.Name, int64(len(sa.Secrets)), translateTimestampSince(sa.CreationTimestamp, now)}
	})
}

func nodeRow(node *corev1.Node, now time.Time) []interface{} {
	var status []string
	for _, cond := range node.Status.Conditions {
		if cond.Type != corev1.NodeReady {
			continue
		}
		// Like printNode's condition map, the last Ready condition wins.
		if cond.Status == corev1.ConditionTrue {
			status = []string{string(cond.Type)}
		} else {
			status = []string{"Not" + string(cond.Type)}
		}
	}
	if len(status) == 0 {
		status = append(status, "Unknown")
	}
	if node.Spec.Unschedulable {
		status = append(status, "SchedulingDisabled")
	}

	roles := strings.Join(findNodeRoles(node), ",")
	if len(roles) == 0 {
		roles = "<none>"
	}

	info := node.Status.NodeInfo
	osImage, kernelVersion, crVersion := info.OSImage, info.KernelVersion, info.ContainerRuntimeVersion
	if osImage == "" {
		osImage = "<unknown>"
	}
	if kernelVersion == "" {
		kernelVersion = "<unknown>"
	}
	if crVersion == "" {
		crVersion = "<unknown>"
	}
	return []interface{}{
		node.Name, strings.Join(status, ","), roles, translateTimestampSince(node.CreationTimestamp, now), info.KubeletVersion,
		nodeAddress(node, corev1.NodeInternalIP), nodeAddress(node, corev1.NodeExternalIP), osImage, kernelVersion, crVersion,
	}
}

// nodeAddress returns the node's first address of type t, or "<none>".
func nodeAddress(node *corev1.Node, t corev1.NodeAddressType) string {
	for _, address := range node.Status.Addresses {
		if address.Type == t {
			return address.Address
		}
	}
	return "<none>"
}

// findNodeRoles returns the sorted roles of a node, from
// node-role.kubernetes.io/<role> labels and the kubernetes.io/role label.
func findNodeRoles(node *corev1.Node) []string {
	roles := sets.New[string]()
	for k, v := range node.Labels {
		switch {
		case strings.HasPrefix(k, labelNodeRolePrefix):
			if role := strings.TrimPrefix(k, labelNodeRolePrefix); len(role) > 0 {
				roles.Insert(role)
			}
		case k == nodeLabelRole && v != "":
			roles.Insert(v)
		}
	}
	return sets.List(roles)
}

func serviceRow(svc *corev1.Service, now time.Time) []interface{} {
	// kube-apiserver defaults type to ClusterIP and fills clusterIPs from
	// clusterIP; do the same for objects stored without those defaults.
	svcType := svc.Spec.Type
	if svcType == "" {
		svcType = corev1.ServiceTypeClusterIP
	}
	internalIP := svc.Spec.ClusterIP
	if len(svc.Spec.ClusterIPs) > 0 {
		internalIP = svc.Spec.ClusterIPs[0]
	}
	if internalIP == "" {
		internalIP = "<none>"
	}
	svcPorts := makePortString(svc.Spec.Ports)
	if len(svcPorts) == 0 {
		svcPorts = "<none>"
	}
	return []interface{}{
		svc.Name, string(svcType), internalIP, serviceExternalIP(svc, svcType), svcPorts,
		translateTimestampSince(svc.CreationTimestamp, now), labels.FormatLabels(svc.Spec.Selector),
	}
}

// serviceExternalIP ports getServiceExternalIP with wide=true, as
// kube-apiserver generates server-side tables.
func serviceExternalIP(svc *corev1.Service, svcType corev1.ServiceType) string {
	switch svcType {
	case corev1.ServiceTypeClusterIP, corev1.ServiceTypeNodePort:
		if len(svc.Spec.ExternalIPs) > 0 {
			return strings.Join(svc.Spec.ExternalIPs, ",")
		}
		return "<none>"
	case corev1.ServiceTypeLoadBalancer:
		lbIps := loadBalancerStatusStringer(svc.Status.LoadBalancer, true)
		if len(svc.Spec.ExternalIPs) > 0 {
			results := []string{}
			if len(lbIps) > 0 {
				results = append(results, strings.Split(lbIps, ",")...)
			}
			results = append(results, svc.Spec.ExternalIPs...)
			return strings.Join(results, ",")
		}
		if len(lbIps) > 0 {
			return lbIps
		}
		return "<pending>"
	case corev1.ServiceTypeExternalName:
		return svc.Spec.ExternalName
	}
	return "<unknown>"
}

// loadBalancerStatusStringer lists the ingress IPs (or hostnames), sorted;
// unless wide, clipped to 16 bytes.
func loadBalancerStatusStringer(s corev1.LoadBalancerStatus, wide bool) string {
	result := sets.New[string]()
	for _, ing := range s.Ingress {
		if ing.IP != "" {
			result.Insert(ing.IP)
		} else if ing.Hostname != "" {
			result.Insert(ing.Hostname)
		}
	}
	r := strings.Join(sets.List(result), ",")
	if !wide && len(r) > loadBalancerWidth {
		r = r[0:(loadBalancerWidth-3)] + "..."
	}
	return r
}

func makePortString(ports []corev1.ServicePort) string {
	pieces := make([]string, len(ports))
	for i, port := range ports {
		protocol := port.Protocol
		if protocol == "" {
			protocol = corev1.ProtocolTCP // the API default
		}
		pieces[i] = fmt.Sprintf("%d/%s", port.Port, protocol)
		if port.NodePort > 0 {
			pieces[i] = fmt.Sprintf("%d:%d/%s", port.Port, port.NodePort, protocol)
		}
	}
	return strings.Join(pieces, ",")
}

// formatEndpoints lists up to 3 ip:port pairs, then "+ N more...".
func formatEndpoints(endpoints *corev1.Endpoints) string {
	if len(endpoints.Subsets) == 0 {
		return "<none>"
	}
	list := []string{}
	max := 3
	more := false
	count := 0
	for i := range endpoints.Subsets {
		ss := &endpoints.Subsets[i]
		if len(ss.Ports) == 0 {
			// It's possible to have headless services with no ports.
			count += len(ss.Addresses)
			for i := range ss.Addresses {
				if len(list) == max {
					more = true
					break
				}
				list = append(list, ss.Addresses[i].IP)
			}
			continue
		}
		for i := range ss.Ports {
			port := &ss.Ports[i]
			count += len(ss.Addresses)
			for i := range ss.Addresses {
				if len(list) == max {
					more = true
					break
				}
				list = append(list, net.JoinHostPort(ss.Addresses[i].IP, strconv.Itoa(int(port.Port))))
			}
		}
	}
	ret := strings.Join(list, ",")
	if more {
		return fmt.Sprintf("%s + %d more...", ret, count-max)
	}
	return ret
}

func eventRow(ev *corev1.Event, now time.Time) []interface{} {
	firstTimestamp := translateTimestampSince(ev.FirstTimestamp, now)
	if ev.FirstTimestamp.IsZero() {
		firstTimestamp = translateMicroTimestampSince(ev.EventTime, now)
	}
	lastTimestamp := translateTimestampSince(ev.LastTimestamp, now)
	if ev.LastTimestamp.IsZero() {
		lastTimestamp = firstTimestamp
	}
	count := ev.Count
	if ev.Series != nil {
		lastTimestamp = translateMicroTimestampSince(ev.Series.LastObservedTime, now)
		count = ev.Series.Count
	} else if count == 0 {
		// Singleton events don't have a count set in the new API.
		count = 1
	}
	target := strings.ToLower(ev.InvolvedObject.Kind)
	if len(ev.InvolvedObject.Name) > 0 {
		target += "/" + ev.InvolvedObject.Name
	}
	return []interface{}{
		lastTimestamp, ev.Type, ev.Reason, target, ev.InvolvedObject.FieldPath,
		formatEventSource(ev.Source, ev.ReportingController, ev.ReportingInstance),
		strings.TrimSpace(ev.Message), firstTimestamp, int64(count), ev.Name,
	}
}

// formatEventSource formats "component, host", falling back to the
// reporting controller and instance, and leaving out an empty host.
func formatEventSource(es corev1.EventSource, reportingController, reportingInstance string) string {
	component, instance := es.Component, es.Host
	if component == "" {
		component = reportingController
	}
	if instance == "" {
		instance = reportingInstance
	}
	if instance == "" {
		return component
	}
	return component + ", " + instance
}
