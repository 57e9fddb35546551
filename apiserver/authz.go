package apiserver

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"synod/apiserver/auth"
)

// Auth is the apiserver's Authorizer: the given authenticators (X.509
// client certificates, bearer tokens) and RBAC over the rbac objects in the
// store.
type Auth struct {
	authn auth.Authenticator
	rbac  *auth.RBAC
}

// NewAuth builds authentication and RBAC for s.
func (s *Server) NewAuth(authn auth.Authenticator) *Auth {
	return &Auth{authn: authn, rbac: auth.NewRBAC(&rbacCache{s: s, ttl: time.Second})}
}

// SetAuth turns authentication and authorization on.
func (s *Server) SetAuth(a Authorizer) { s.auth = a }

func (a *Auth) Authenticate(r *http.Request) (string, []string, bool, error) {
	u, ok, err := a.authn.Authenticate(r)
	if err != nil || !ok {
		return "", nil, false, err
	}
	return u.Name, u.Groups, true, nil
}

func (a *Auth) Authorize(user string, groups []string, at Attributes) (bool, string, error) {
	return a.rbac.Authorize(toAuthAttributes(user, groups, at))
}

func toAuthAttributes(user string, groups []string, at Attributes) auth.Attributes {
	return auth.Attributes{User: &auth.User{Name: user, Groups: groups}, Verb: at.Verb, Namespace: at.Namespace,
		APIGroup: at.APIGroup, Resource: at.Resource, Subresource: at.Subresource, Name: at.Name, Path: at.Path, ResourceRequest: at.ResourceRequest}
}

// rbacCache reads rbac objects straight from the store, keeping each answer
// for ttl: a policy change takes effect within a second without a read per
// request.
type rbacCache struct {
	s   *Server
	ttl time.Duration

	mu      sync.Mutex
	entries map[string]rbacEntry
}

type rbacEntry struct {
	at   time.Time
	data []byte // JSON of the answer; nil for not found
}

func (c *rbacCache) load(key string, fetch func(ctx context.Context) (any, error)) ([]byte, error) {
	c.mu.Lock()
	if e, ok := c.entries[key]; ok && time.Since(e.at) < c.ttl {
		c.mu.Unlock()
		return e.data, nil
	}
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	v, err := fetch(ctx)
	var data []byte
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return nil, err
	default:
		data, _ = json.Marshal(v)
	}
	c.mu.Lock()
	if c.entries == nil {
		c.entries = map[string]rbacEntry{}
	}
	c.entries[key] = rbacEntry{at: time.Now(), data: data}
	c.mu.Unlock()
	return data, nil
}

func (c *rbacCache) ListClusterRoleBindings() ([]rbacv1.ClusterRoleBinding, error) {
	var out []rbacv1.ClusterRoleBinding
	err := c.list("clusterrolebindings", "", &out)
	return out, err
}

func (c *rbacCache) ListRoleBindings(ns string) ([]rbacv1.RoleBinding, error) {
	var out []rbacv1.RoleBinding
	err := c.list("rolebindings", ns, &out)
	return out, err
}

func (c *rbacCache) GetClusterRole(name string) (*rbacv1.ClusterRole, error) {
	out := &rbacv1.ClusterRole{}
	ok, err := c.get("clusterroles", "", name, out)
	if !ok {
		return nil, err
	}
	return out, nil
}

func (c *rbacCache) GetRole(ns, name string) (*rbacv1.Role, error) {
	out := &rbacv1.Role{}
	ok, err := c.get("roles", ns, name, out)
	if !ok {
		return nil, err
	}
	return out, nil
}

func (c *rbacCache) list(resource, ns string, into any) error {
	res := c.s.resources["rbac.authorization.k8s.io/v1/"+resource]
	data, err := c.load("list/"+resource+"/"+ns, func(ctx context.Context) (any, error) {
		items, _, _, err := c.s.store.list(ctx, res, ns, listOptions{})
		return items, err
	})
	if err != nil || data == nil {
		return err
	}
	return json.Unmarshal(data, into)
}

func (c *rbacCache) get(resource, ns, name string, into any) (bool, error) {
	res := c.s.resources["rbac.authorization.k8s.io/v1/"+resource]
	data, err := c.load("get/"+resource+"/"+ns+"/"+name, func(ctx context.Context) (any, error) {
		return c.s.store.get(ctx, res, ns, name)
	})
	if err != nil || data == nil {
		return false, err
	}
	return true, json.Unmarshal(data, into)
}
