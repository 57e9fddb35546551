package proxy

import (
	"cmp"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
)

// servicePort is one port of one Service as the proxier programs it.
type servicePort struct {
	name            string // kube-proxy's ServicePortName.String(): "ns/svc" or "ns/svc:port"
	protocol        string // "tcp", "udp" or "sctp"
	clusterIP       string
	port            int32
	nodePort        int32
	affinitySeconds int32 // ClientIP affinity timeout; 0 means no affinity
	externalLocal   bool  // externalTrafficPolicy: Local

	// endpoints are those cluster traffic goes to; localEndpoints those
	// on this node (used for externalTrafficPolicy Local). Both sorted.
	endpoints      []endpoint
	localEndpoints []endpoint
}

type endpoint struct {
	ip   netip.Addr
	port int32
}

// String is kube-proxy's endpoint string, part of the KUBE-SEP hash.
func (e endpoint) String() string {
	return net.JoinHostPort(e.ip.String(), strconv.Itoa(int(e.port)))
}

// skipService is kube-proxy's ShouldSkipService: headless and
// ExternalName services have nothing to proxy.
func skipService(svc *v1.Service) bool {
	return svc.Spec.ClusterIP == "" || svc.Spec.ClusterIP == v1.ClusterIPNone || svc.Spec.Type == v1.ServiceTypeExternalName
}

// clusterIPv4 returns the service's IPv4 cluster IP, if it has one.
func clusterIPv4(svc *v1.Service) (string, bool) {
	ips := svc.Spec.ClusterIPs
	if len(ips) == 0 {
		ips = []string{svc.Spec.ClusterIP}
	}
	for _, s := range ips {
		if a, err := netip.ParseAddr(s); err == nil && a.Is4() {
			return a.String(), true
		}
	}
	return "", false
}

// servicePorts turns a Service and its EndpointSlices into the ports to
// program. nodeName decides which endpoints are local.
func servicePorts(svc *v1.Service, slices_ []*discovery.EndpointSlice, nodeName string) []servicePort {
	if skipService(svc) {
		return nil
	}
	ip, ok := clusterIPv4(svc)
	if !ok {
		return nil
	}
	var affinity int32
	if svc.Spec.SessionAffinity == v1.ServiceAffinityClientIP {
		affinity = v1.DefaultClientIPServiceAffinitySeconds
		if c := svc.Spec.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil {
			affinity = *c.ClientIP.TimeoutSeconds
		}
	}
	externalLocal := svc.Spec.ExternalTrafficPolicy == v1.ServiceExternalTrafficPolicyLocal &&
		(svc.Spec.Type == v1.ServiceTypeNodePort || svc.Spec.Type == v1.ServiceTypeLoadBalancer)
	var out []servicePort
	for _, p := range svc.Spec.Ports {
		name := svc.Namespace + "/" + svc.Name
		if p.Name != "" {
			name += ":" + p.Name
		}
		proto := p.Protocol
		if proto == "" {
			proto = v1.ProtocolTCP
		}
		sp := servicePort{
			name:            name,
			protocol:        strings.ToLower(string(proto)),
			clusterIP:       ip,
			port:            p.Port,
			affinitySeconds: affinity,
			externalLocal:   externalLocal,
		}
		if svc.Spec.Type == v1.ServiceTypeNodePort || svc.Spec.Type == v1.ServiceTypeLoadBalancer {
			sp.nodePort = p.NodePort
		}
		sp.endpoints, sp.localEndpoints = pickEndpoints(slices_, p.Name, proto, nodeName)
		out = append(out, sp)
	}
	return out
}

// candidate is an endpoint with the conditions that decide its use.
type candidate struct {
	endpoint
	local, ready, servingTerminating bool
}

// pickEndpoints collects the endpoints of the slice port named portName
// and chooses as kube-proxy does: the ready ones, or, if none is ready,
// the ones still serving while terminating (so connections drain instead
// of being refused during a rollout). The same rule applies separately to
// the local endpoints.
func pickEndpoints(eps []*discovery.EndpointSlice, portName string, proto v1.Protocol, nodeName string) (cluster, local []endpoint) {
	seen := map[endpoint]bool{}
	var cands []candidate
	for _, s := range eps {
		if s.AddressType != discovery.AddressTypeIPv4 {
			continue
		}
		var port int32
		found := false
		for _, sp := range s.Ports {
			name := ""
			if sp.Name != nil {
				name = *sp.Name
			}
			pp := v1.ProtocolTCP
			if sp.Protocol != nil {
				pp = *sp.Protocol
			}
			if name == portName && pp == proto && sp.Port != nil {
				port, found = *sp.Port, true
				break
			}
		}
		if !found {
			continue
		}
		for _, e := range s.Endpoints {
			if len(e.Addresses) == 0 {
				continue
			}
			a, err := netip.ParseAddr(e.Addresses[0])
			if err != nil || !a.Is4() {
				continue
			}
			ep := endpoint{ip: a, port: port}
			if seen[ep] {
				continue
			}
			seen[ep] = true
			c := e.Conditions
			ready := c.Ready == nil || *c.Ready
			serving := c.Serving == nil || *c.Serving
			terminating := c.Terminating != nil && *c.Terminating
			cands = append(cands, candidate{
				endpoint:           ep,
				local:              e.NodeName != nil && *e.NodeName == nodeName && nodeName != "",
				ready:              ready,
				servingTerminating: serving && terminating,
			})
		}
	}
	slices.SortFunc(cands, func(a, b candidate) int {
		if c := a.ip.Compare(b.ip); c != 0 {
			return c
		}
		return cmp.Compare(a.port, b.port)
	})
	choose := func(onlyLocal bool) []endpoint {
		var ready, fallback []endpoint
		for _, c := range cands {
			if onlyLocal && !c.local {
				continue
			}
			if c.ready {
				ready = append(ready, c.endpoint)
			} else if c.servingTerminating {
				fallback = append(fallback, c.endpoint)
			}
		}
		if len(ready) > 0 {
			return ready
		}
		return fallback
	}
	return choose(false), choose(true)
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
