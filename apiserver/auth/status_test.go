package auth

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestUnauthorizedBody(t *testing.T) {
	w := httptest.NewRecorder()
	Unauthorized(w)
	if w.Code != http.StatusUnauthorized {
		t.Fatalf("code %d", w.Code)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("content type %q", ct)
	}
	const wbody = `{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}`
	if got := strings.TrimSpace(w.Body.String()); got != wbody {
		t.Fatalf("body\n%s\nwant\n%s", got, wbody)
	}
}

func TestForbiddenMessages(t *testing.T) {
	alice := &User{Name: "alice"}
	tests := []struct {
		name     string
		a        Attributes
		reason   string
		wmsg     string
		wdetails *metav1.StatusDetails
	}{
		{
			name:     "namespaced list",
			a:        res(alice, "list", "default", "", "pods", "", ""),
			wmsg:     `pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the namespace "default"`,
			wdetails: &metav1.StatusDetails{Kind: "pods"},
		},
		{
			name:     "named object",
			a:        res(alice, "get", "default", "", "pods", "", "x"),
			wmsg:     `pods "x" is forbidden: User "alice" cannot get resource "pods" in API group "" in the namespace "default"`,
			wdetails: &metav1.StatusDetails{Kind: "pods", Name: "x"},
		},
		{
			name:     "cluster scope",
			a:        res(alice, "list", "", "", "nodes", "", ""),
			wmsg:     `nodes is forbidden: User "alice" cannot list resource "nodes" in API group "" at the cluster scope`,
			wdetails: &metav1.StatusDetails{Kind: "nodes"},
		},
		{
			name:     "group and subresource",
			a:        res(alice, "update", "prod", "apps", "deployments", "scale", "web"),
			wmsg:     `deployments.apps "web" is forbidden: User "alice" cannot update resource "deployments/scale" in API group "apps" in the namespace "prod"`,
			wdetails: &metav1.StatusDetails{Group: "apps", Kind: "deployments", Name: "web"},
		},
		{
			name:     "non-resource",
			a:        path(alice, "get", "/foo"),
			wmsg:     `forbidden: User "alice" cannot get path "/foo"`,
			wdetails: &metav1.StatusDetails{},
		},
		{
			name:     "with reason",
			a:        res(alice, "list", "", "", "secrets", "", ""),
			reason:   `RBAC: clusterrole.rbac.authorization.k8s.io "x" not found`,
			wmsg:     `secrets is forbidden: User "alice" cannot list resource "secrets" in API group "" at the cluster scope: RBAC: clusterrole.rbac.authorization.k8s.io "x" not found`,
			wdetails: &metav1.StatusDetails{Kind: "secrets"},
		},
		{
			name:     "sanitized",
			a:        path(alice, "get", "/<script>"),
			wmsg:     `forbidden: User "alice" cannot get path "/&lt;script&gt;"`,
			wdetails: &metav1.StatusDetails{},
		},
	}
	for _, tt := range tests {
		w := httptest.NewRecorder()
		Forbidden(w, tt.a, tt.reason)
		if w.Code != http.StatusForbidden {
			t.Fatalf("%s: code %d", tt.name, w.Code)
		}
		var st metav1.Status
		if err := json.Unmarshal(w.Body.Bytes(), &st); err != nil {
			t.Fatalf("%s: %v in %s", tt.name, err, w.Body)
		}
		if st.Kind != "Status" || st.APIVersion != "v1" || st.Status != metav1.StatusFailure ||
			st.Reason != metav1.StatusReasonForbidden || st.Code != http.StatusForbidden {
			t.Fatalf("%s: status %+v", tt.name, st)
		}
		if st.Message != tt.wmsg {
			t.Fatalf("%s: message\n%s\nwant\n%s", tt.name, st.Message, tt.wmsg)
		}
		if d := st.Details; d == nil || d.Group != tt.wdetails.Group || d.Kind != tt.wdetails.Kind || d.Name != tt.wdetails.Name {
			t.Fatalf("%s: details %+v, want %+v", tt.name, st.Details, tt.wdetails)
		}
	}
}
