package printers

import (
	"strconv"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	discoveryv1beta1 "k8s.io/api/discovery/v1beta1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Printers for the discovery.k8s.io group.

func init() {
	doc := discoveryv1beta1.EndpointSlice{}.SwaggerDoc()
	register("EndpointSlice", []metav1.TableColumnDefinition{
		nameColumn(),
		column("AddressType", "string", doc["addressType"]),
		column("Ports", "string", doc["ports"]),
		column("Endpoints", "string", doc["endpoints"]),
		ageColumn(),
	}, func(s *discoveryv1.EndpointSlice, now time.Time) []interface{} {
		return []interface{}{s.Name, string(s.AddressType), formatDiscoveryPorts(s.Ports), formatDiscoveryEndpoints(s.Endpoints), translateTimestampSince(s.CreationTimestamp, now)}
	})
}

// formatDiscoveryPorts lists up to 3 port numbers (or names, or "*").
func formatDiscoveryPorts(ports []discoveryv1.EndpointPort) string {
	list := []string{}
	max := 3
	more := false
	count := 0
	for _, port := range ports {
		if len(list) < max {
			portNum := "*"
			if port.Port != nil {
				portNum = strconv.Itoa(int(*port.Port))
			} else if port.Name != nil {
				portNum = *port.Name
			}
			list = append(list, portNum)
		} else if len(list) == max {
			more = true
		}
		count++
	}
	return listWithMoreString(list, more, count, max)
}

// formatDiscoveryEndpoints lists up to 3 endpoint addresses.
func formatDiscoveryEndpoints(endpoints []discoveryv1.Endpoint) string {
	list := []string{}
	max := 3
	more := false
	count := 0
	for _, endpoint := range endpoints {
		for _, address := range endpoint.Addresses {
			if len(list) < max {
				list = append(list, address)
			} else if len(list) == max {
				more = true
			}
			count++
		}
	}
	return listWithMoreString(list, more, count, max)
}
