package auth

import (
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

var (
	// ErrInvalidToken is returned by TokenAuthenticator for a bearer token
	// that is not in the token file.
	ErrInvalidToken = errors.New("auth: invalid bearer token")

	// ErrEmptyCommonName is returned by X509Authenticator for a verified
	// client certificate without a subject CN (there is no user to name).
	ErrEmptyCommonName = errors.New("auth: common name of client certificate cannot be empty")
)

// X509Authenticator authenticates a request by its TLS client certificate:
// the user is the subject CN, the groups are the subject O values (plus
// system:authenticated).
//
// The HTTPS server is expected to run with tls.VerifyClientCertIfGiven, so
// requests without a certificate reach the handler and can fall through to
// a token; the certificate is verified again here, against this pool and
// for client-auth usage, so a tls.Config with broader ClientCAs cannot
// widen who is trusted.
type X509Authenticator struct {
	roots *x509.CertPool
	now   func() time.Time // non-const so modifiable by tests

	// verified caches successful verifications by certificate chain, as
	// kube-apiserver's x509 authenticator does: a chain verification costs
	// signature checks, and an HTTP/2 client sends every request with the
	// same chain. An entry holds until the chain's first expiry.
	mu       sync.Mutex
	verified map[[sha256.Size]byte]verifiedChain
}

type verifiedChain struct {
	user     User
	notAfter time.Time
}

// maxVerifiedChains bounds the cache; it is emptied when full. An entry is
// trusted for at most verifiedTTL, so that what Verify checks beyond the
// presented chain (the root's own validity) is looked at again.
const (
	maxVerifiedChains = 1024
	verifiedTTL       = 10 * time.Minute
)

var _ Authenticator = (*X509Authenticator)(nil)

// NewX509 returns an authenticator trusting client certificates signed by
// roots (typically pki.CA.Pool()).
func NewX509(roots *x509.CertPool) *X509Authenticator {
	return &X509Authenticator{roots: roots, now: time.Now}
}

// Authenticate implements Authenticator. A plain-HTTP request, or one
// without a client certificate, is (nil, false, nil).
func (a *X509Authenticator) Authenticate(r *http.Request) (*User, bool, error) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return nil, false, nil
	}
	leaf := r.TLS.PeerCertificates[0]
	now := a.now()
	h := sha256.New()
	for _, c := range r.TLS.PeerCertificates {
		h.Write(c.Raw)
	}
	var key [sha256.Size]byte
	h.Sum(key[:0])
	a.mu.Lock()
	v, ok := a.verified[key]
	a.mu.Unlock()
	if ok && now.Before(v.notAfter) && !now.Before(leaf.NotBefore) {
		return &User{Name: v.user.Name, Groups: slices.Clone(v.user.Groups)}, true, nil
	}
	opts := x509.VerifyOptions{
		Roots:         a.roots,
		Intermediates: x509.NewCertPool(),
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	for _, c := range r.TLS.PeerCertificates[1:] {
		opts.Intermediates.AddCert(c)
	}
	if _, err := leaf.Verify(opts); err != nil {
		return nil, false, err
	}
	if leaf.Subject.CommonName == "" {
		return nil, false, ErrEmptyCommonName
	}
	u := User{Name: leaf.Subject.CommonName, Groups: withAuthenticated(leaf.Subject.Organization)}
	notAfter := now.Add(verifiedTTL)
	for _, c := range r.TLS.PeerCertificates {
		if c.NotAfter.Before(notAfter) {
			notAfter = c.NotAfter
		}
	}
	a.mu.Lock()
	if a.verified == nil || len(a.verified) >= maxVerifiedChains {
		a.verified = map[[sha256.Size]byte]verifiedChain{}
	}
	a.verified[key] = verifiedChain{user: u, notAfter: notAfter}
	a.mu.Unlock()
	return &User{Name: u.Name, Groups: slices.Clone(u.Groups)}, true, nil
}

// BearerToken returns the token of an "Authorization: Bearer <token>"
// header. The scheme is case-insensitive, as in Kubernetes.
func BearerToken(r *http.Request) (string, bool) {
	h := strings.TrimSpace(r.Header.Get("Authorization"))
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	if token == "" || strings.ContainsAny(token, " \t") {
		return "", false
	}
	return token, true
}

// Union tries each authenticator in order and returns the first success.
// If none succeeds, the errors of those that rejected credentials are
// joined; (nil, false, nil) means no credentials were presented at all.
func Union(authenticators ...Authenticator) Authenticator {
	return AuthenticatorFunc(func(r *http.Request) (*User, bool, error) {
		var errs []error
		for _, a := range authenticators {
			u, ok, err := a.Authenticate(r)
			if ok {
				return u, true, nil
			}
			if err != nil {
				errs = append(errs, err)
			}
		}
		return nil, false, errors.Join(errs...)
	})
}
