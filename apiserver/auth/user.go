// Package auth is the apiserver's authentication and authorization: X.509
// client certificates and a static bearer-token file identify the caller,
// and an RBAC authorizer ported from Kubernetes
// (plugin/pkg/auth/authorizer/rbac) decides what the caller may do. Denials
// are written as the Kubernetes Status objects kubectl expects.
//
// It deliberately does not import k8s.io/apiserver: User and Attributes are
// small local mirrors of user.Info and authorizer.Attributes.
package auth

import (
	"context"
	"net/http"
	"slices"
	"strings"
)

// Well-known user and group names, as Kubernetes spells them.
const (
	SystemMasters      = "system:masters" // allowed everything, RBAC or not
	AllAuthenticated   = "system:authenticated"
	AllUnauthenticated = "system:unauthenticated"
	NodesGroup         = "system:nodes"
	Anonymous          = "system:anonymous"

	KubeScheduler         = "system:kube-scheduler"
	KubeControllerManager = "system:kube-controller-manager"

	ServiceAccountUsernamePrefix = "system:serviceaccount:"
	AllServiceAccountsGroup      = "system:serviceaccounts"
	ServiceAccountGroupPrefix    = "system:serviceaccounts:"
)

// User is an authenticated identity.
type User struct {
	Name   string
	Groups []string
	UID    string
}

// InGroup reports whether u is a member of group.
func (u *User) InGroup(group string) bool {
	return u != nil && slices.Contains(u.Groups, group)
}

// Authenticator identifies the caller of a request.
//
// The three outcomes are distinct on purpose:
//   - (user, true, nil): authenticated.
//   - (nil, false, nil): the request carries no credentials this
//     authenticator understands; another authenticator may try.
//   - (nil, false, err): credentials were presented but are invalid
//     (unknown token, certificate not signed by the CA, ...).
//
// Either failure should end in Unauthorized(w) when no authenticator of a
// Union succeeds; err is for logs, never for the client.
type Authenticator interface {
	Authenticate(r *http.Request) (*User, bool, error)
}

// AuthenticatorFunc adapts a function to Authenticator.
type AuthenticatorFunc func(r *http.Request) (*User, bool, error)

// Authenticate calls f(r).
func (f AuthenticatorFunc) Authenticate(r *http.Request) (*User, bool, error) { return f(r) }

// withAuthenticated returns groups plus system:authenticated (once), which
// Kubernetes adds to every successfully authenticated user.
func withAuthenticated(groups []string) []string {
	out := make([]string, 0, len(groups)+1)
	for _, g := range groups {
		if g != "" && !slices.Contains(out, g) {
			out = append(out, g)
		}
	}
	if !slices.Contains(out, AllAuthenticated) {
		out = append(out, AllAuthenticated)
	}
	return out
}

// ServiceAccountUsername returns "system:serviceaccount:<namespace>:<name>".
func ServiceAccountUsername(namespace, name string) string {
	return ServiceAccountUsernamePrefix + namespace + ":" + name
}

// SplitServiceAccountUsername is the inverse of ServiceAccountUsername.
func SplitServiceAccountUsername(username string) (namespace, name string, ok bool) {
	rest, ok := strings.CutPrefix(username, ServiceAccountUsernamePrefix)
	if !ok {
		return "", "", false
	}
	namespace, name, ok = strings.Cut(rest, ":")
	if !ok || namespace == "" || name == "" || strings.Contains(name, ":") {
		return "", "", false
	}
	return namespace, name, true
}

// ServiceAccountUser returns the identity Kubernetes gives a service
// account: its username plus the groups system:serviceaccounts,
// system:serviceaccounts:<namespace> and system:authenticated.
func ServiceAccountUser(namespace, name, uid string) *User {
	return &User{
		Name:   ServiceAccountUsername(namespace, name),
		UID:    uid,
		Groups: []string{AllServiceAccountsGroup, ServiceAccountGroupPrefix + namespace, AllAuthenticated},
	}
}

type userKey struct{}

// WithUser returns a copy of ctx carrying u.
func WithUser(ctx context.Context, u *User) context.Context {
	return context.WithValue(ctx, userKey{}, u)
}

// UserFrom returns the user stored by WithUser, if any.
func UserFrom(ctx context.Context) (*User, bool) {
	u, ok := ctx.Value(userKey{}).(*User)
	return u, ok && u != nil
}
