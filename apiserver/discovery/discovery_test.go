package discovery

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	apidiscoveryv2 "k8s.io/api/apidiscovery/v2"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	apimachineryversion "k8s.io/apimachinery/pkg/version"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/scale"
	openapiproto "k8s.io/kube-openapi/pkg/util/proto"

	"synod/apiserver/resource"
)

// testServer serves d (404 for anything it declines) and records the
// Content-Type of every response by path.
type testServer struct {
	*httptest.Server
	mu           sync.Mutex
	contentTypes map[string]string
}

func newTestServer(t *testing.T, d *Discovery) *testServer {
	t.Helper()
	s := &testServer{contentTypes: map[string]string{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !d.ServeHTTP(w, r) {
			http.NotFound(w, r)
		}
		s.mu.Lock()
		s.contentTypes[r.URL.Path] = w.Header().Get("Content-Type")
		s.mu.Unlock()
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *testServer) contentType(path string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ct, ok := s.contentTypes[path]
	return ct, ok
}

func newClient(t *testing.T, s *testServer, legacy bool) *discovery.DiscoveryClient {
	t.Helper()
	dc, err := discovery.NewDiscoveryClientForConfig(&rest.Config{Host: s.URL})
	if err != nil {
		t.Fatalf("NewDiscoveryClientForConfig: %v", err)
	}
	dc.UseLegacyDiscovery = legacy
	return dc
}

// wantEntry is what discovery must list for one resource or subresource.
type wantEntry struct {
	gv         string
	name       string
	kind       string
	group      string // subresources with a foreign kind only
	version    string
	namespaced bool
	verbs      []string
	shortNames []string
	categories []string
}

// expected lists every entry implied by resource.All() plus
// selfsubjectaccessreviews.
func expected() map[string]wantEntry {
	want := map[string]wantEntry{}
	for _, r := range resource.All() {
		gv := r.GroupVersion().String()
		want[gv+" "+r.Name] = wantEntry{gv: gv, name: r.Name, kind: r.Kind, namespaced: r.Namespaced,
			verbs: resourceVerbs, shortNames: r.ShortNames, categories: r.Categories}
		for _, sub := range r.Subresources {
			e := wantEntry{gv: gv, name: r.Name + "/" + sub, kind: r.Kind, namespaced: r.Namespaced}
			switch sub {
			case "status":
				e.verbs = []string{"get", "patch", "update"}
			case "scale":
				e.group, e.version, e.kind = "autoscaling", "v1", "Scale"
				e.verbs = []string{"get", "patch", "update"}
			case "binding":
				e.kind, e.verbs = "Binding", []string{"create"}
			case "log":
				e.kind, e.verbs = "Pod", []string{"get"}
			case "exec":
				e.kind, e.verbs = "PodExecOptions", []string{"create", "get"}
			case "finalize":
				e.verbs = []string{"update"}
			default:
				continue // not pinned down by this test
			}
			want[gv+" "+e.name] = e
		}
	}
	want["authorization.k8s.io/v1 selfsubjectaccessreviews"] = wantEntry{gv: "authorization.k8s.io/v1",
		name: "selfsubjectaccessreviews", kind: "SelfSubjectAccessReview", verbs: []string{"create"}}
	return want
}

// TestClientGoDiscovery runs client-go's discovery against the handler,
// once negotiating aggregated discovery (v2) and once legacy-only, and
// checks both return every resource and subresource.
func TestClientGoDiscovery(t *testing.T) {
	for _, legacy := range []bool{false, true} {
		name := "aggregated"
		if legacy {
			name = "legacy"
		}
		t.Run(name, func(t *testing.T) {
			s := newTestServer(t, New(resource.All(), apimachineryversion.Info{}))
			dc := newClient(t, s, legacy)
			groups, lists, err := dc.ServerGroupsAndResources()
			if err != nil {
				t.Fatalf("ServerGroupsAndResources: %v", err)
			}

			// Content-Type drives client-go's choice; check it got what we meant.
			for _, p := range []string{"/api", "/apis"} {
				ct, _ := s.contentType(p)
				isV2, err := discovery.ContentTypeIsGVK(ct, apidiscoveryv2.SchemeGroupVersion.WithKind("APIGroupDiscoveryList"))
				if err != nil || isV2 == legacy {
					t.Errorf("%s: Content-Type %q, aggregated=%v err=%v; want aggregated=%v", p, ct, isV2, err, !legacy)
				}
			}
			if _, fetched := s.contentType("/apis/apps/v1"); fetched != legacy {
				t.Errorf("/apis/apps/v1 fetched=%v, want %v", fetched, legacy)
			}

			wantGroups := map[string]string{"": "v1", "apps": "v1", "batch": "v1", "coordination.k8s.io": "v1",
				"discovery.k8s.io": "v1", "rbac.authorization.k8s.io": "v1", "authorization.k8s.io": "v1"}
			if len(groups) != len(wantGroups) {
				t.Errorf("got %d groups, want %d", len(groups), len(wantGroups))
			}
			for _, g := range groups {
				if pv, ok := wantGroups[g.Name]; !ok || g.PreferredVersion.Version != pv {
					t.Errorf("group %q preferred %q, want listed with %q", g.Name, g.PreferredVersion.Version, pv)
				}
			}

			want := expected()
			for _, l := range lists {
				for _, r := range l.APIResources {
					key := l.GroupVersion + " " + r.Name
					w, ok := want[key]
					if !ok {
						if !strings.Contains(r.Name, "/") {
							t.Errorf("unexpected resource %s", key)
						}
						continue
					}
					delete(want, key)
					got := wantEntry{gv: l.GroupVersion, name: r.Name, kind: r.Kind, group: r.Group, version: r.Version,
						namespaced: r.Namespaced, verbs: r.Verbs, shortNames: r.ShortNames, categories: r.Categories}
					if !reflect.DeepEqual(got, w) {
						t.Errorf("%s:\n got %+v\nwant %+v", key, got, w)
					}
					if !strings.Contains(r.Name, "/") && r.SingularName == "" {
						t.Errorf("%s: no singularName", key)
					}
				}
			}
			for key := range want {
				t.Errorf("missing %s", key)
			}
		})
	}
}

func TestRESTMapper(t *testing.T) {
	s := newTestServer(t, New(resource.All(), apimachineryversion.Info{}))
	dc := newClient(t, s, false)
	grs, err := restmapper.GetAPIGroupResources(dc)
	if err != nil {
		t.Fatalf("GetAPIGroupResources: %v", err)
	}
	mapper := restmapper.NewShortcutExpander(restmapper.NewDiscoveryRESTMapper(grs), dc, nil)

	for _, tc := range []struct {
		in   string
		want schema.GroupVersionResource
	}{
		{"po", schema.GroupVersionResource{Version: "v1", Resource: "pods"}},
		{"pod", schema.GroupVersionResource{Version: "v1", Resource: "pods"}},
		{"svc", schema.GroupVersionResource{Version: "v1", Resource: "services"}},
		{"ns", schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}},
		{"no", schema.GroupVersionResource{Version: "v1", Resource: "nodes"}},
		{"ep", schema.GroupVersionResource{Version: "v1", Resource: "endpoints"}},
		{"ev", schema.GroupVersionResource{Version: "v1", Resource: "events"}},
		{"cm", schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}},
		{"sa", schema.GroupVersionResource{Version: "v1", Resource: "serviceaccounts"}},
		{"secret", schema.GroupVersionResource{Version: "v1", Resource: "secrets"}},
		{"deploy", schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}},
		{"rs", schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "replicasets"}},
		{"ds", schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "daemonsets"}},
		{"jobs", schema.GroupVersionResource{Group: "batch", Version: "v1", Resource: "jobs"}},
		{"lease", schema.GroupVersionResource{Group: "coordination.k8s.io", Version: "v1", Resource: "leases"}},
		{"endpointslices", schema.GroupVersionResource{Group: "discovery.k8s.io", Version: "v1", Resource: "endpointslices"}},
		{"clusterrolebinding", schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterrolebindings"}},
		{"selfsubjectaccessreviews", schema.GroupVersionResource{Group: "authorization.k8s.io", Version: "v1", Resource: "selfsubjectaccessreviews"}},
	} {
		got, err := mapper.ResourceFor(schema.ParseGroupResource(tc.in).WithVersion(""))
		if err != nil || got != tc.want {
			t.Errorf("ResourceFor(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}

	m, err := mapper.RESTMapping(schema.GroupKind{Group: "apps", Kind: "Deployment"})
	if err != nil {
		t.Fatalf("RESTMapping(Deployment): %v", err)
	}
	if m.Resource.Resource != "deployments" || m.Scope.Name() != meta.RESTScopeNameNamespace {
		t.Errorf("Deployment mapping = %v scope %s", m.Resource, m.Scope.Name())
	}
	m, err = mapper.RESTMapping(schema.GroupKind{Kind: "Node"})
	if err != nil || m.Scope.Name() != meta.RESTScopeNameRoot {
		t.Errorf("Node mapping = %+v, %v; want cluster-scoped", m, err)
	}

	// `kubectl get all` expands the "all" category.
	expander := restmapper.NewDiscoveryCategoryExpander(dc)
	got, ok := expander.Expand("all")
	if !ok {
		t.Fatal(`category "all" not found`)
	}
	var names []string
	for _, gr := range got {
		names = append(names, gr.String())
	}
	sort.Strings(names)
	wantAll := []string{"daemonsets.apps", "deployments.apps", "jobs.batch", "pods", "replicasets.apps", "services"}
	if !slices.Equal(names, wantAll) {
		t.Errorf(`category "all" = %v, want %v`, names, wantAll)
	}
}

// TestScaleKind checks kubectl scale's resolution of the Scale kind.
func TestScaleKind(t *testing.T) {
	for _, legacy := range []bool{false, true} {
		s := newTestServer(t, New(resource.All(), apimachineryversion.Info{}))
		resolver := scale.NewDiscoveryScaleKindResolver(newClient(t, s, legacy))
		for _, res := range []string{"deployments", "replicasets"} {
			got, err := resolver.ScaleForResource(schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: res})
			want := schema.GroupVersionKind{Group: "autoscaling", Version: "v1", Kind: "Scale"}
			if err != nil || got != want {
				t.Errorf("legacy=%v ScaleForResource(%s) = %v, %v; want %v", legacy, res, got, err, want)
			}
		}
	}
}

func TestVersion(t *testing.T) {
	s := newTestServer(t, New(resource.All(), apimachineryversion.Info{}))
	got, err := newClient(t, s, false).ServerVersion()
	if err != nil {
		t.Fatalf("ServerVersion: %v", err)
	}
	if want := DefaultVersion(); *got != want {
		t.Errorf("ServerVersion = %+v, want %+v", *got, want)
	}
	if got.Major != "1" || got.Minor != "32" || got.GitVersion != "v1.32.0-synod" || !strings.Contains(got.Platform, "/") {
		t.Errorf("ServerVersion = %+v", *got)
	}

	custom := apimachineryversion.Info{Major: "1", Minor: "32", GitVersion: "v1.32.9-x"}
	s = newTestServer(t, New(resource.All(), custom))
	got, err = newClient(t, s, false).ServerVersion()
	if err != nil || *got != custom {
		t.Errorf("ServerVersion = %+v, %v; want %+v", got, err, custom)
	}
}

func TestOpenAPI(t *testing.T) {
	s := newTestServer(t, New(resource.All(), apimachineryversion.Info{}))
	dc := newClient(t, s, false)
	doc, err := dc.OpenAPISchema()
	if err != nil {
		t.Fatalf("OpenAPISchema: %v", err)
	}
	if doc.GetSwagger() != "2.0" || doc.GetInfo().GetTitle() != "Kubernetes" {
		t.Errorf("OpenAPISchema = %v", doc)
	}
	// kubectl builds its validation and patch models this way.
	models, err := openapiproto.NewOpenAPIData(doc)
	if err != nil {
		t.Fatalf("NewOpenAPIData: %v", err)
	}
	if m := models.LookupModel("io.k8s.api.core.v1.Pod"); m != nil {
		t.Errorf("LookupModel(Pod) = %v, want nil (validation skipped)", m)
	}
	if ct, _ := s.contentType("/openapi/v2"); ct != contentTypeOpenAPIProto {
		t.Errorf("/openapi/v2 Content-Type = %q", ct)
	}

	if _, err := dc.OpenAPIV3().Paths(); err == nil {
		t.Error("OpenAPIV3().Paths() succeeded, want 404")
	}
}

// get fetches path from s with the given Accept header.
func get(t *testing.T, s *testServer, path, accept string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, s.URL+path, nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, body
}

func TestRawResponses(t *testing.T) {
	s := newTestServer(t, New(resource.All(), apimachineryversion.Info{}))
	host := strings.TrimPrefix(s.URL, "http://")

	for _, tc := range []struct {
		path, accept string
		code         int
		contentType  string
		contains     string
	}{
		{"/api", "", 200, "application/json", `"serverAddressByClientCIDRs":[{"clientCIDR":"0.0.0.0/0","serverAddress":"` + host + `"}]`},
		{"/api/", "application/json", 200, "application/json", `"versions":["v1"]`},
		{"/api", discovery.AcceptV2 + ",application/json", 200, contentTypeAggregated, `"kind":"APIGroupDiscoveryList"`},
		{"/api", "application/json, " + discovery.AcceptV2, 200, "application/json", `"kind":"APIVersions"`},
		{"/apis", "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json", 200, "application/json", `"kind":"APIGroupList"`},
		{"/apis", discovery.AcceptV2NoPeer + "," + discovery.AcceptV2, 200, contentTypeAggregated, `"name":"apps"`},
		{"/apis/apps", "", 200, "application/json", `"preferredVersion":{"groupVersion":"apps/v1","version":"v1"}`},
		{"/apis/apps/v1", "", 200, "application/json", `"name":"deployments/scale","singularName":"","namespaced":true,"group":"autoscaling","version":"v1","kind":"Scale"`},
		{"/api/v1", "", 200, "application/json", `"name":"pods/exec","singularName":"","namespaced":true,"kind":"PodExecOptions","verbs":["create","get"]`},
		{"/apis/authorization.k8s.io/v1", "", 200, "application/json", `"name":"selfsubjectaccessreviews"`},
		{"/version", "", 200, "application/json", `"gitVersion":"v1.32.0-synod"`},
		{"/openapi/v2", "application/json", 200, "application/json", `"swagger":"2.0"`},
		{"/openapi/v2", "application/com.github.proto-openapi.spec.v2@v1.0+protobuf", 200, contentTypeOpenAPIProto, "2.0"},
		{"/openapi/v3", "", 404, "application/json", `"reason":"NotFound"`},
		{"/openapi/v3/apis/apps/v1", "", 404, "application/json", `"kind":"Status"`},
	} {
		resp, body := get(t, s, tc.path, tc.accept)
		if resp.StatusCode != tc.code || resp.Header.Get("Content-Type") != tc.contentType || !strings.Contains(string(body), tc.contains) {
			t.Errorf("GET %s (Accept %q) = %d %q %s\nwant %d %q containing %s",
				tc.path, tc.accept, resp.StatusCode, resp.Header.Get("Content-Type"), body, tc.code, tc.contentType, tc.contains)
		}
		if cc := resp.Header.Get("Cache-Control"); cc != "no-cache, private" {
			t.Errorf("GET %s: Cache-Control %q", tc.path, cc)
		}
	}

	// The aggregated document decodes and carries subresources inline.
	_, body := get(t, s, "/api", discovery.AcceptV2)
	var agg apidiscoveryv2.APIGroupDiscoveryList
	if err := json.Unmarshal(body, &agg); err != nil || agg.APIVersion != "apidiscovery.k8s.io/v2" || len(agg.Items) != 1 {
		t.Fatalf("aggregated /api = %s, %v", body, err)
	}
	for _, r := range agg.Items[0].Versions[0].Resources {
		if r.Resource == "pods" {
			if r.Scope != apidiscoveryv2.ScopeNamespace || r.ResponseKind.Kind != "Pod" || len(r.Subresources) != 4 {
				t.Errorf("aggregated pods = %+v", r)
			}
		}
	}

	// Conditional GET.
	resp, _ := get(t, s, "/apis/apps/v1", "")
	req, _ := http.NewRequest(http.MethodGet, s.URL+"/apis/apps/v1", nil)
	req.Header.Set("If-None-Match", resp.Header.Get("ETag"))
	resp2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if resp.Header.Get("ETag") == "" || resp2.StatusCode != http.StatusNotModified {
		t.Errorf("If-None-Match %q: %d, want 304", resp.Header.Get("ETag"), resp2.StatusCode)
	}

	// Only GET and HEAD.
	resp3, err := http.Post(s.URL+"/api", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp3.Body.Close()
	if resp3.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /api = %d, want 405", resp3.StatusCode)
	}
}

// TestDeclines checks paths that are not discovery are left to the caller.
func TestDeclines(t *testing.T) {
	d := New(resource.All(), apimachineryversion.Info{})
	for _, path := range []string{
		"/", "/healthz", "/apis/unknown.io", "/apis/apps/v2", "/api/v2", "/apis/apps/v1/deployments",
		"/api/v1/pods", "/api/v1/namespaces/default/pods", "/openapi", "/versions", "/apis//v1",
	} {
		rec := httptest.NewRecorder()
		if d.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil)) {
			t.Errorf("ServeHTTP(%s) = true", path)
		}
		if rec.Body.Len() != 0 || len(rec.Header()) != 0 {
			t.Errorf("ServeHTTP(%s) wrote %v %q", path, rec.Header(), rec.Body.String())
		}
	}
}

// TestAddResource adds a group the way the lead would and checks both
// discovery modes see it, concurrently with clients reading.
func TestAddResource(t *testing.T) {
	d := New(resource.All(), apimachineryversion.Info{})
	s := newTestServer(t, d)

	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() { // readers racing AddResource (run with -race)
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
				for _, path := range []string{"/apis", "/apis/autoscaling/v1"} {
					req, _ := http.NewRequest(http.MethodGet, s.URL+path, nil)
					req.Header.Set("Accept", discovery.AcceptV2)
					if resp, err := http.DefaultClient.Do(req); err == nil {
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
					}
				}
			}
		}
	}()
	autoscalingV1 := schema.GroupVersion{Group: "autoscaling", Version: "v1"}
	d.AddResource(autoscalingV1, metav1.APIResource{Name: "horizontalpodautoscalers", SingularName: "horizontalpodautoscaler",
		Namespaced: true, Kind: "HorizontalPodAutoscaler", Verbs: resourceVerbs, ShortNames: []string{"hpa"}, Categories: []string{"all"}})
	d.AddResource(autoscalingV1, metav1.APIResource{Name: "horizontalpodautoscalers/status", Namespaced: true,
		Kind: "HorizontalPodAutoscaler", Verbs: []string{"get", "patch", "update"}})
	d.AddResource(schema.GroupVersion{Group: "autoscaling", Version: "v2"}, metav1.APIResource{Name: "horizontalpodautoscalers",
		SingularName: "horizontalpodautoscaler", Namespaced: true, Kind: "HorizontalPodAutoscaler", Verbs: resourceVerbs})
	// Replacing an entry by name.
	d.AddResource(AuthorizationV1, metav1.APIResource{Name: "selfsubjectaccessreviews", SingularName: "selfsubjectaccessreview",
		Kind: "SelfSubjectAccessReview", Verbs: []string{"create"}, ShortNames: []string{"ssar"}})
	close(stop)
	wg.Wait()

	for _, legacy := range []bool{false, true} {
		dc := newClient(t, s, legacy)
		groups, lists, err := dc.ServerGroupsAndResources()
		if err != nil {
			t.Fatalf("legacy=%v: %v", legacy, err)
		}
		var autoscaling *metav1.APIGroup
		for _, g := range groups {
			if g.Name == "autoscaling" {
				autoscaling = g
			}
		}
		if autoscaling == nil || autoscaling.PreferredVersion.Version != "v1" || len(autoscaling.Versions) != 2 {
			t.Errorf("legacy=%v: autoscaling group = %+v", legacy, autoscaling)
		}
		found := map[string]metav1.APIResource{}
		for _, l := range lists {
			for _, r := range l.APIResources {
				found[l.GroupVersion+" "+r.Name] = r
			}
		}
		for _, key := range []string{"autoscaling/v1 horizontalpodautoscalers", "autoscaling/v1 horizontalpodautoscalers/status",
			"autoscaling/v2 horizontalpodautoscalers", "apps/v1 deployments/scale"} {
			if _, ok := found[key]; !ok {
				t.Errorf("legacy=%v: missing %s", legacy, key)
			}
		}
		if r := found["authorization.k8s.io/v1 selfsubjectaccessreviews"]; !slices.Equal(r.ShortNames, []string{"ssar"}) {
			t.Errorf("legacy=%v: replaced selfsubjectaccessreviews = %+v", legacy, r)
		}
	}
}
