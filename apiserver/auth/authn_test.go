package auth

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"synod/internal/pki"
)

// whoami answers with the authenticated user as JSON, or 401.
func whoami(authn Authenticator, lastErr *error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, ok, err := authn.Authenticate(r)
		*lastErr = err
		if !ok {
			Unauthorized(w)
			return
		}
		_ = json.NewEncoder(w).Encode(u)
	})
}

// newTLSServer starts an HTTPS server with a serving cert from ca and the
// given client-auth policy.
func newTLSServer(t *testing.T, ca *pki.CA, clientAuth tls.ClientAuthType, h http.Handler) *httptest.Server {
	t.Helper()
	certPEM, keyPEM, err := ca.IssueServing(nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: clientAuth, ClientCAs: ca.Pool()}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// client returns an HTTPS client trusting ca and presenting certPEM/keyPEM
// (if given).
func client(t *testing.T, ca *pki.CA, certPEM, keyPEM []byte) *http.Client {
	t.Helper()
	cfg := &tls.Config{RootCAs: ca.Pool()}
	if certPEM != nil {
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 10 * time.Second}
}

func get(t *testing.T, c *http.Client, url, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

func mustUser(t *testing.T, body string) User {
	t.Helper()
	var u User
	if err := json.Unmarshal([]byte(body), &u); err != nil {
		t.Fatalf("%v in %q", err, body)
	}
	return u
}

const unauthorizedBody = `{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}`

func TestX509AndTokenOverTLS(t *testing.T) {
	ca, err := pki.EnsureCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	tokens := NewTokens(map[string]*User{"s3cret": {Name: "bot", UID: "42", Groups: []string{"robots"}}})
	var lastErr error
	srv := newTLSServer(t, ca, tls.VerifyClientCertIfGiven, whoami(Union(NewX509(ca.Pool()), tokens), &lastErr))

	certPEM, keyPEM, err := ca.IssueClient("alice", []string{"dev", "ops"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	code, body := get(t, client(t, ca, certPEM, keyPEM), srv.URL, "")
	if code != http.StatusOK {
		t.Fatalf("cert: %d %s (err %v)", code, body, lastErr)
	}
	u := mustUser(t, body)
	slices.Sort(u.Groups)
	if u.Name != "alice" || !slices.Equal(u.Groups, []string{"dev", "ops", AllAuthenticated}) {
		t.Fatalf("cert user %+v", u)
	}

	// No certificate, no token: 401 with the Kubernetes body.
	anon := client(t, ca, nil, nil)
	code, body = get(t, anon, srv.URL, "")
	if code != http.StatusUnauthorized || body != unauthorizedBody || lastErr != nil {
		t.Fatalf("anonymous: %d %s err=%v", code, body, lastErr)
	}

	// Token without certificate.
	code, body = get(t, anon, srv.URL, "s3cret")
	if code != http.StatusOK {
		t.Fatalf("token: %d %s", code, body)
	}
	if u := mustUser(t, body); u.Name != "bot" || u.UID != "42" || !slices.Equal(u.Groups, []string{"robots", AllAuthenticated}) {
		t.Fatalf("token user %+v", u)
	}
	code, _ = get(t, anon, srv.URL, "wrong")
	if code != http.StatusUnauthorized || !errors.Is(lastErr, ErrInvalidToken) {
		t.Fatalf("bad token: %d err=%v", code, lastErr)
	}

	// A certificate wins over a token: the first authenticator decides.
	code, body = get(t, client(t, ca, certPEM, keyPEM), srv.URL, "s3cret")
	if code != http.StatusOK || mustUser(t, body).Name != "alice" {
		t.Fatalf("cert+token: %d %s", code, body)
	}
}

// With a server that requests but does not verify client certificates, the
// authenticator's own verification is what keeps strangers out.
func TestX509RejectsUntrusted(t *testing.T) {
	ca, err := pki.EnsureCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	other, err := pki.EnsureCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var lastErr error
	srv := newTLSServer(t, ca, tls.RequestClientCert, whoami(NewX509(ca.Pool()), &lastErr))

	foreignCert, foreignKey, _ := other.IssueClient("mallory", []string{SystemMasters}, time.Hour)
	code, _ := get(t, client(t, ca, foreignCert, foreignKey), srv.URL, "")
	if code != http.StatusUnauthorized || lastErr == nil {
		t.Fatalf("foreign CA: %d err=%v", code, lastErr)
	}

	// A serving certificate lacks client-auth usage.
	servCert, servKey, _ := ca.IssueServing(nil, time.Hour)
	code, _ = get(t, client(t, ca, servCert, servKey), srv.URL, "")
	if code != http.StatusUnauthorized || lastErr == nil {
		t.Fatalf("serving cert as client cert: %d err=%v", code, lastErr)
	}

	// Plain HTTP: no TLS state at all.
	u, ok, err := NewX509(ca.Pool()).Authenticate(httptest.NewRequest("GET", "/", nil))
	if u != nil || ok || err != nil {
		t.Fatalf("plain http: %v %v %v", u, ok, err)
	}
}

func TestBearerToken(t *testing.T) {
	for h, want := range map[string]string{
		"Bearer abc":    "abc",
		"bearer abc":    "abc",
		"BEARER  abc ":  "abc",
		"Basic abc":     "",
		"Bearer":        "",
		"Bearer ":       "",
		"Bearer a b":    "",
		"":              "",
		"abc":           "",
		"Bearer\tabc\t": "",
	} {
		r := httptest.NewRequest("GET", "/", nil)
		if h != "" {
			r.Header.Set("Authorization", h)
		}
		got, ok := BearerToken(r)
		if got != want || ok != (want != "") {
			t.Errorf("BearerToken(%q) = %q, %v; want %q", h, got, ok, want)
		}
	}
}

func TestParseTokens(t *testing.T) {
	const file = `# synod static tokens
tok1,admin,uid1,"system:masters,dev"

tok2, bob, uid2
tok3,carol,uid3,ops
tok4,dave,uid4,"a, b,,c"
`
	tokens, err := ParseTokens(strings.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]User{
		"tok1": {Name: "admin", UID: "uid1", Groups: []string{"system:masters", "dev"}},
		"tok2": {Name: "bob", UID: "uid2"},
		"tok3": {Name: "carol", UID: "uid3", Groups: []string{"ops"}},
		"tok4": {Name: "dave", UID: "uid4", Groups: []string{"a", "b", "c"}},
	}
	if len(tokens) != len(want) {
		t.Fatalf("got %d tokens, want %d", len(tokens), len(want))
	}
	for tok, w := range want {
		g := tokens[tok]
		if g == nil || g.Name != w.Name || g.UID != w.UID || !slices.Equal(g.Groups, w.Groups) {
			t.Errorf("token %s: %+v, want %+v", tok, g, w)
		}
	}
}

func TestParseTokensBadLines(t *testing.T) {
	tests := []struct {
		file, werr string
	}{
		{"tok1,admin,uid1\ntok2,bob\n", "line 2: want at least 3 columns (token, user name, user uid), found 2"},
		{"justatoken\n", "line 1: want at least 3 columns"},
		{",admin,uid1\n", "line 1: empty token"},
		{"tok1,,uid1\n", "line 1: empty user name"},
		{"tok1,a,1\n\ntok1,b,2\n", "line 3: duplicate token (first on line 1)"},
		{"tok1,a,1,\"unterminated\n", "extraneous or missing \" in quoted-field"},
	}
	for _, tt := range tests {
		_, err := ParseTokens(strings.NewReader(tt.file))
		if err == nil || !strings.Contains(err.Error(), tt.werr) {
			t.Errorf("ParseTokens(%q) = %v, want error containing %q", tt.file, err, tt.werr)
		}
	}
	if _, err := NewTokenFile("/nonexistent/tokens.csv"); err == nil {
		t.Error("NewTokenFile on a missing file succeeded")
	}
}

// Verified chains are cached (an HTTP/2 client presents the same chain on
// every request), but never past the certificate's expiry, and a cached
// success does not vouch for another certificate.
func TestX509VerificationCache(t *testing.T) {
	ca, err := pki.EnsureCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	other, err := pki.EnsureCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	request := func(certPEM []byte) *http.Request {
		block, _ := pem.Decode(certPEM)
		leaf, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		r := httptest.NewRequest("GET", "/", nil)
		r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}}
		return r
	}
	alice, _, _ := ca.IssueClient("alice", []string{"team"}, time.Hour)
	a := NewX509(ca.Pool())
	for i := range 2 {
		u, ok, err := a.Authenticate(request(alice))
		if !ok || err != nil || u.Name != "alice" || !slices.Equal(u.Groups, []string{"team", AllAuthenticated}) {
			t.Fatalf("attempt %d: %+v %v %v", i, u, ok, err)
		}
		u.Groups[0] = "changed" // callers own what they get
	}
	if len(a.verified) != 1 {
		t.Fatalf("%d cached chains, want 1", len(a.verified))
	}
	mallory, _, _ := other.IssueClient("alice", []string{"team"}, time.Hour)
	if _, ok, err := a.Authenticate(request(mallory)); ok || err == nil {
		t.Fatalf("same name from a foreign CA accepted after a cached success")
	}
	a.now = func() time.Time { return time.Now().Add(2 * time.Hour) }
	if _, ok, err := a.Authenticate(request(alice)); ok || err == nil {
		t.Fatalf("expired certificate accepted from the cache")
	}
}
