package apiserver

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"math/big"
	"math/rand/v2"
	"net"
	"strconv"

	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"synod/apiserver/auth"
)

// defaultTolerationSeconds is how long a pod stays on a node that is not
// ready or unreachable before the node controller evicts it.
const defaultTolerationSeconds = int64(300)

// admitCreate runs the admission steps of a create: DefaultTolerationSeconds
// (pods tolerate not-ready and unreachable nodes for 300 s unless they say
// otherwise), then NamespaceLifecycle (namespaced objects need an existing
// namespace that is not terminating).
func (s *Server) admitCreate(ctx context.Context, req *request, obj runtime.Object) error {
	if pod, ok := obj.(*corev1.Pod); ok {
		addDefaultTolerations(pod)
	}
	if !req.res.Namespaced {
		return nil
	}
	nsRes := s.resources["/v1/namespaces"]
	nsObj, err := s.store.getLocal(ctx, nsRes, "", req.namespace)
	if apierrors.IsNotFound(err) {
		// Maybe created a moment ago through another master: ask the leader.
		nsObj, err = s.store.get(ctx, nsRes, "", req.namespace)
	}
	if apierrors.IsNotFound(err) {
		return apierrors.NewNotFound(nsRes.GVR().GroupResource(), req.namespace)
	}
	if err != nil {
		return err
	}
	if ns := nsObj.(*corev1.Namespace); ns.DeletionTimestamp != nil || ns.Status.Phase == corev1.NamespaceTerminating {
		err := apierrors.NewForbidden(req.res.GVR().GroupResource(), nameOf(obj),
			fmt.Errorf("unable to create new content in namespace %s because it is being terminated", req.namespace))
		// The cause lets controllers tell this refusal from others, as
		// kube-apiserver's NamespaceLifecycle admission does.
		err.ErrStatus.Details.Causes = append(err.ErrStatus.Details.Causes, metav1.StatusCause{
			Type: corev1.NamespaceTerminatingCause, Message: fmt.Sprintf("namespace %s is being terminated", req.namespace), Field: "metadata.namespace"})
		return err
	}
	return nil
}

func nameOf(obj runtime.Object) string {
	if m, err := meta.Accessor(obj); err == nil {
		return m.GetName()
	}
	return ""
}

// Claims on service IPs and node ports are keys of their own, created with
// compare-and-swap, so two masters never hand out the same one.
const (
	serviceIPClaims = "/registry/ranges/serviceips/"
	nodePortClaims  = "/registry/ranges/servicenodeports/"
)

// allocate gives a new Service its cluster IP and node ports. The returned
// release undoes the claims if the create then fails.
func (s *Server) allocate(ctx context.Context, req *request, obj runtime.Object) (func(), error) {
	svc, ok := obj.(*corev1.Service)
	if !ok {
		return func() {}, nil
	}
	var claimed []string
	release := func() {
		for _, k := range claimed {
			s.store.kv.Delete(context.Background(), k)
		}
	}
	claim := func(key string) (bool, error) {
		resp, err := s.store.kv.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
			Then(clientv3.OpPut(key, svc.Namespace+"/"+svc.Name)).Commit()
		if err != nil {
			return false, storeError(err)
		}
		if resp.Succeeded {
			claimed = append(claimed, key)
		}
		return resp.Succeeded, nil
	}
	if svc.Spec.Type != corev1.ServiceTypeExternalName && svc.Spec.ClusterIP != corev1.ClusterIPNone {
		if svc.Spec.ClusterIP == "" {
			ip, err := s.pickIP(claim)
			if err != nil {
				release()
				return nil, err
			}
			svc.Spec.ClusterIP = ip
		} else {
			if ip := net.ParseIP(svc.Spec.ClusterIP); ip == nil || !s.serviceCIDR.Contains(ip) {
				release()
				return nil, invalid(req.res, svc.Name, field.ErrorList{field.Invalid(field.NewPath("spec", "clusterIP"), svc.Spec.ClusterIP,
					fmt.Sprintf("the provided IP (%s) is not in the valid range. The range of valid IPs is %s", svc.Spec.ClusterIP, s.serviceCIDR))})
			}
			if ok, err := claim(serviceIPClaims + svc.Spec.ClusterIP); err != nil || !ok {
				release()
				if err != nil {
					return nil, err
				}
				return nil, invalid(req.res, svc.Name, field.ErrorList{field.Invalid(field.NewPath("spec", "clusterIP"), svc.Spec.ClusterIP, "provided IP is already allocated")})
			}
		}
		svc.Spec.ClusterIPs = []string{svc.Spec.ClusterIP}
	}
	if svc.Spec.Type == corev1.ServiceTypeNodePort || svc.Spec.Type == corev1.ServiceTypeLoadBalancer {
		for i := range svc.Spec.Ports {
			p := &svc.Spec.Ports[i]
			if p.NodePort == 0 {
				port, err := pickPort(claim)
				if err != nil {
					release()
					return nil, err
				}
				p.NodePort = port
				continue
			}
			if ok, err := claim(nodePortClaims + strconv.Itoa(int(p.NodePort))); err != nil || !ok {
				release()
				if err != nil {
					return nil, err
				}
				return nil, invalid(req.res, svc.Name, field.ErrorList{field.Invalid(field.NewPath("spec", "ports").Index(i).Child("nodePort"), p.NodePort, "provided port is already allocated")})
			}
		}
	}
	return release, nil
}

// pickIP claims a free address of the service range, trying random ones
// first (cheap while the range is sparse), then scanning.
func (s *Server) pickIP(claim func(string) (bool, error)) (string, error) {
	base := big.NewInt(0).SetBytes(s.serviceCIDR.IP.To4())
	ones, bits := s.serviceCIDR.Mask.Size()
	size := int64(1) << (bits - ones)
	try := func(off int64) (string, bool, error) {
		v := big.NewInt(0).Add(base, big.NewInt(off)).Uint64()
		ip := make(net.IP, 4)
		binary.BigEndian.PutUint32(ip, uint32(v))
		ok, err := claim(serviceIPClaims + ip.String())
		return ip.String(), ok, err
	}
	// Offset 1 is reserved for the kubernetes service, as in Kubernetes.
	for i := 0; i < 32; i++ {
		if ip, ok, err := try(2 + rand.Int64N(size-3)); err != nil || ok {
			return ip, err
		}
	}
	for off := int64(2); off < size-1; off++ {
		if ip, ok, err := try(off); err != nil || ok {
			return ip, err
		}
	}
	return "", apierrors.NewInternalError(fmt.Errorf("no service IPs left in %s", s.serviceCIDR))
}

func pickPort(claim func(string) (bool, error)) (int32, error) {
	for i := 0; i < 64; i++ {
		p := int32(30000 + rand.IntN(2768))
		if ok, err := claim(nodePortClaims + strconv.Itoa(int(p))); err != nil || ok {
			return p, err
		}
	}
	for p := int32(30000); p <= 32767; p++ {
		if ok, err := claim(nodePortClaims + strconv.Itoa(int(p))); err != nil || ok {
			return p, err
		}
	}
	return 0, apierrors.NewInternalError(fmt.Errorf("no node ports left"))
}

// releaseService frees a deleted service's claims.
func (s *Server) releaseService(svc *corev1.Service) {
	if svc.Spec.ClusterIP != "" && svc.Spec.ClusterIP != corev1.ClusterIPNone {
		s.store.kv.Delete(context.Background(), serviceIPClaims+svc.Spec.ClusterIP)
	}
	for _, p := range svc.Spec.Ports {
		if p.NodePort != 0 {
			s.store.kv.Delete(context.Background(), nodePortClaims+strconv.Itoa(int(p.NodePort)))
		}
	}
}

// bootstrap creates the system namespaces if they are missing. Every master
// does it; the create is a compare-and-swap, so they cannot clash.
func (s *Server) bootstrap(ctx context.Context, log *slog.Logger) error {
	nsRes := s.resources["/v1/namespaces"]
	for _, name := range systemNamespaces {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, UID: newUID(), CreationTimestamp: metav1.Now()},
			Spec: corev1.NamespaceSpec{Finalizers: []corev1.FinalizerName{corev1.FinalizerKubernetes}}, Status: corev1.NamespaceStatus{Phase: corev1.NamespaceActive}}
		ns.SetGroupVersionKind(nsRes.GVK())
		if _, err := s.store.create(ctx, nsRes, "", name, ns); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create namespace %s: %w", name, err)
		}
	}
	roles, bindings := auth.DefaultClusterRoles()
	crRes, crbRes := s.resources["rbac.authorization.k8s.io/v1/clusterroles"], s.resources["rbac.authorization.k8s.io/v1/clusterrolebindings"]
	for i := range roles {
		r := &roles[i]
		r.UID, r.CreationTimestamp = newUID(), metav1.Now()
		r.SetGroupVersionKind(crRes.GVK())
		if _, err := s.store.create(ctx, crRes, "", r.Name, r); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create cluster role %s: %w", r.Name, err)
		}
	}
	for i := range bindings {
		b := &bindings[i]
		b.UID, b.CreationTimestamp = newUID(), metav1.Now()
		b.SetGroupVersionKind(crbRes.GVK())
		if _, err := s.store.create(ctx, crbRes, "", b.Name, b); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create cluster role binding %s: %w", b.Name, err)
		}
	}
	log.Debug("system namespaces and bootstrap RBAC present")
	return nil
}

// addDefaultTolerations is Kubernetes' DefaultTolerationSeconds admission.
func addDefaultTolerations(pod *corev1.Pod) {
	for _, key := range []string{corev1.TaintNodeNotReady, corev1.TaintNodeUnreachable} {
		found := false
		for _, t := range pod.Spec.Tolerations {
			if (t.Key == key || t.Key == "") && (t.Effect == corev1.TaintEffectNoExecute || t.Effect == "") &&
				(t.Operator == corev1.TolerationOpExists || t.Key == key) {
				found = true
			}
		}
		if !found {
			secs := defaultTolerationSeconds
			pod.Spec.Tolerations = append(pod.Spec.Tolerations, corev1.Toleration{Key: key, Operator: corev1.TolerationOpExists,
				Effect: corev1.TaintEffectNoExecute, TolerationSeconds: &secs})
		}
	}
}
