package main

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"synod/internal/pki"
)

// apiClient is an HTTPS client that trusts the cluster CA and presents a
// client certificate for user/groups (none if user is "").
func apiClient(t *testing.T, pkiDir, user string, groups ...string) *http.Client {
	t.Helper()
	ca, err := pki.EnsureCA(pkiDir)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{RootCAs: ca.Pool()}
	if user != "" {
		certPEM, keyPEM, err := ca.IssueClient(user, groups, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
}

type apiStatus struct {
	Kind    string
	Code    int
	Reason  string
	Message string
	Details struct {
		Causes []struct{ Field, Message string }
	}
}

func call(t *testing.T, c *http.Client, method, url, contentType string, body []byte) (int, apiStatus, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, bytes.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var st apiStatus
	json.Unmarshal(raw, &st)
	return resp.StatusCode, st, string(raw)
}

// Bad requests get Kubernetes' status codes and Status bodies, and nothing
// of them reaches the store.
func TestAPIBadInput(t *testing.T) {
	c := startAPICluster(t, 3)
	pkiDir := filepath.Join(c.Dir(), "pki")
	admin := apiClient(t, pkiDir, "admin", "system:masters")
	api := c.Masters()[1].APIURL
	cms := api + "/api/v1/namespaces/default/configmaps"

	for _, tc := range []struct {
		name, method, url, ct string
		body                  string
		code                  int
		reason                string
	}{
		{"malformed JSON", "POST", cms, "application/json", `{"apiVersion":"v1","kind":"ConfigMap",`, 400, "BadRequest"},
		{"malformed YAML", "POST", cms, "application/yaml", "apiVersion: v1\nkind: [ConfigMap\n", 400, "BadRequest"},
		{"wrong kind", "POST", cms, "application/json", `{"apiVersion":"v1","kind":"Secret","metadata":{"name":"x"}}`, 400, "BadRequest"},
		{"missing namespace", "POST", api + "/api/v1/namespaces/nope/configmaps", "application/json", `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"}}`, 404, "NotFound"},
		{"no name", "POST", cms, "application/json", `{"apiVersion":"v1","kind":"ConfigMap","metadata":{}}`, 422, "Invalid"},
		{"3 MiB object", "POST", cms, "application/json", `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"big"},"data":{"a":"` + strings.Repeat("x", 3<<20) + `"}}`, 413, "RequestEntityTooLarge"},
		{"unknown field selector", "GET", cms + "?fieldSelector=spec.bogus%3D1", "", "", 400, "BadRequest"},
		{"unknown resource", "GET", api + "/api/v1/namespaces/default/widgets", "", "", 404, "NotFound"},
	} {
		code, st, raw := call(t, admin, tc.method, tc.url, tc.ct, []byte(tc.body))
		if code != tc.code || st.Kind != "Status" || st.Reason != tc.reason {
			t.Errorf("%s: %d %s/%s, want %d %s; body %.300s", tc.name, code, st.Kind, st.Reason, tc.code, tc.reason, raw)
		}
	}
	// An invalid object is a 422 naming the field.
	pod := `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"Bad_Name"},"spec":{"containers":[{"name":"c"}]}}`
	code, st, raw := call(t, admin, "POST", api+"/api/v1/namespaces/default/pods", "application/json", []byte(pod))
	fields := map[string]bool{}
	for _, c := range st.Details.Causes {
		fields[c.Field] = true
	}
	if code != 422 || st.Reason != "Invalid" || !fields["metadata.name"] || !fields["spec.containers[0].image"] {
		t.Fatalf("invalid pod: %d %+v\n%s", code, st, raw)
	}
	// A stale update is a 409 Conflict.
	code, _, raw = call(t, admin, "POST", cms, "application/json", []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"},"data":{"v":"1"}}`))
	if code != 201 {
		t.Fatalf("create: %d %s", code, raw)
	}
	var created struct {
		Metadata struct{ ResourceVersion string } `json:"metadata"`
	}
	json.Unmarshal([]byte(raw), &created)
	upd := func(v string) (int, apiStatus) {
		code, st, _ := call(t, admin, "PUT", cms+"/c", "application/json",
			[]byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c","resourceVersion":"`+created.Metadata.ResourceVersion+`"},"data":{"v":"`+v+`"}}`))
		return code, st
	}
	if code, _ := upd("2"); code != 200 {
		t.Fatalf("first update: %d", code)
	}
	if code, st := upd("3"); code != 409 || st.Reason != "Conflict" || !strings.Contains(st.Message, "the object has been modified") {
		t.Fatalf("stale update: %d %+v", code, st)
	}
	// Health and version need no credentials; everything else does.
	for _, p := range []string{"/healthz", "/readyz", "/livez", "/version"} {
		if code, _, raw := call(t, apiClient(t, pkiDir, ""), "GET", api+p, "", nil); code != 200 {
			t.Fatalf("anonymous %s: %d %s", p, code, raw)
		}
	}
	// No credentials: 401. A user without any binding: 403 with Kubernetes' words.
	if code, st, _ := call(t, apiClient(t, pkiDir, ""), "GET", cms, "", nil); code != 401 || st.Reason != "Unauthorized" {
		t.Fatalf("anonymous: %d %+v", code, st)
	}
	code, st, _ = call(t, apiClient(t, pkiDir, "alice"), "GET", cms, "", nil)
	if code != 403 || st.Reason != "Forbidden" || !strings.Contains(st.Message, `User "alice" cannot list resource "configmaps" in API group "" in the namespace "default"`) {
		t.Fatalf("alice without a binding: %d %+v", code, st)
	}
	// Nothing of the rejected requests reached the store.
	code, _, raw = call(t, admin, "GET", cms, "", nil)
	var list struct {
		Items []struct{ Metadata struct{ Name string } }
	}
	json.Unmarshal([]byte(raw), &list)
	if code != 200 || len(list.Items) != 1 || list.Items[0].Metadata.Name != "c" {
		t.Fatalf("configmaps after bad input: %d %s", code, raw)
	}
	// A RoleBinding lets alice in, in that namespace only.
	role := `{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"RoleBinding","metadata":{"name":"alice-view"},"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"view"},"subjects":[{"apiGroup":"rbac.authorization.k8s.io","kind":"User","name":"alice"}]}`
	if code, _, raw := call(t, admin, "POST", api+"/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings", "application/json", []byte(role)); code != 201 {
		t.Fatalf("create rolebinding: %d %s", code, raw)
	}
	alice := apiClient(t, pkiDir, "alice")
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, _, _ := call(t, alice, "GET", cms, "", nil)
		if code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("alice still denied after her RoleBinding: %d", code)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if code, _, _ := call(t, alice, "GET", api+"/api/v1/namespaces/kube-system/configmaps", "", nil); code != 403 {
		t.Fatalf("alice in another namespace: %d, want 403", code)
	}
	if code, _, _ := call(t, alice, "DELETE", cms+"/c", "", nil); code != 403 {
		t.Fatalf("alice deleting with a view role: %d, want 403", code)
	}
}
