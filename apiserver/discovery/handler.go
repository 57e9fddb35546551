package discovery

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Content types of the responses.
const (
	contentTypeJSON = "application/json"
	// contentTypeAggregated marks an apidiscovery.k8s.io/v2 body; client-go
	// decides between aggregated and legacy discovery on this header alone.
	contentTypeAggregated = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
)

// ServeHTTP answers the discovery paths: /api, /api/<v>, /apis,
// /apis/<group>, /apis/<group>/<v>, /version, /openapi/v2 and /openapi/v3
// (always 404). It returns false without writing anything for any other
// path, including the group and version paths of groups it does not list,
// so the caller can route the request elsewhere.
func (d *Discovery) ServeHTTP(w http.ResponseWriter, r *http.Request) bool {
	path := r.URL.Path
	if len(path) > 1 {
		path = strings.TrimSuffix(path, "/")
	}
	serve := d.route(path, r)
	if serve == nil {
		return false
	}
	w.Header().Set("Cache-Control", "no-cache, private")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeStatus(w, http.StatusMethodNotAllowed, metav1.StatusReasonMethodNotAllowed,
			fmt.Sprintf("%s is not supported on %s", r.Method, path))
		return true
	}
	serve(w, r)
	return true
}

// route returns the handler for path, or nil if the path is not ours.
func (d *Discovery) route(path string, r *http.Request) http.HandlerFunc {
	switch {
	case path == "/api":
		return d.serveAPI
	case path == "/apis":
		return d.serveAPIs
	case path == "/version":
		return d.serveVersion
	case path == "/openapi/v2":
		return serveOpenAPIV2
	case path == "/openapi/v3" || strings.HasPrefix(path, "/openapi/v3/"):
		return serveOpenAPIV3
	case strings.HasPrefix(path, "/api/"):
		rest := strings.TrimPrefix(path, "/api/")
		if strings.Contains(rest, "/") {
			return nil
		}
		return d.groupVersionHandler(schema.GroupVersion{Version: rest})
	case strings.HasPrefix(path, "/apis/"):
		parts := strings.Split(strings.TrimPrefix(path, "/apis/"), "/")
		switch {
		case len(parts) == 1 && parts[0] != "":
			return d.groupHandler(parts[0])
		case len(parts) == 2 && parts[0] != "":
			return d.groupVersionHandler(schema.GroupVersion{Group: parts[0], Version: parts[1]})
		}
	}
	return nil
}

// serveAPI answers /api: the aggregated core group if the client asks for
// it, else the legacy APIVersions.
func (d *Discovery) serveAPI(w http.ResponseWriter, r *http.Request) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if wantsAggregated(r.Header.Values("Accept")) {
		writeJSON(w, r, contentTypeAggregated, d.unsafeAggregated(true))
		return
	}
	writeJSON(w, r, contentTypeJSON, d.unsafeAPIVersions(r.Host))
}

// serveAPIs answers /apis: the aggregated groups if the client asks for
// them, else the legacy APIGroupList.
func (d *Discovery) serveAPIs(w http.ResponseWriter, r *http.Request) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if wantsAggregated(r.Header.Values("Accept")) {
		writeJSON(w, r, contentTypeAggregated, d.unsafeAggregated(false))
		return
	}
	writeJSON(w, r, contentTypeJSON, d.unsafeAPIGroupList(r.Host))
}

// groupHandler answers /apis/<name>, or is nil for an unknown group.
func (d *Discovery) groupHandler(name string) http.HandlerFunc {
	d.mu.RLock()
	g := d.unsafeGroup(name)
	d.mu.RUnlock()
	if g == nil || name == "" {
		return nil
	}
	return func(w http.ResponseWriter, r *http.Request) {
		d.mu.RLock()
		defer d.mu.RUnlock()
		writeJSON(w, r, contentTypeJSON, g.apiGroup(r.Host))
	}
}

// groupVersionHandler answers /api/<v> or /apis/<group>/<v>, or is nil for
// an unknown group-version.
func (d *Discovery) groupVersionHandler(gv schema.GroupVersion) http.HandlerFunc {
	d.mu.RLock()
	v := d.unsafeGroupVersion(gv, false)
	d.mu.RUnlock()
	if v == nil || gv.Version == "" {
		return nil
	}
	return func(w http.ResponseWriter, r *http.Request) {
		d.mu.RLock()
		defer d.mu.RUnlock()
		writeJSON(w, r, contentTypeJSON, v.apiResourceList(gv.Group))
	}
}

// serveVersion answers /version.
func (d *Discovery) serveVersion(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, r, contentTypeJSON, d.version)
}

// wantsAggregated reports whether the Accept header prefers the
// apidiscovery.k8s.io/v2 APIGroupDiscoveryList over plain JSON. Media types
// are taken in the order listed (client-go lists its preference first);
// v2beta1 and anything unparseable are skipped.
func wantsAggregated(accept []string) bool {
	for _, header := range accept {
		for _, part := range strings.Split(header, ",") {
			mediaType, params, err := mime.ParseMediaType(strings.TrimSpace(part))
			if err != nil || params["q"] == "0" {
				continue
			}
			switch mediaType {
			case "application/json":
				if params["g"] == "apidiscovery.k8s.io" && params["v"] == "v2" && params["as"] == "APIGroupDiscoveryList" {
					return true
				}
				if params["as"] == "" {
					return false
				}
			case "*/*", "application/*":
				return false
			}
		}
	}
	return false
}

// writeJSON writes obj as JSON with an ETag, answering 304 when the
// client's If-None-Match already names this body.
func writeJSON(w http.ResponseWriter, r *http.Request, contentType string, obj any) {
	body, err := json.Marshal(obj)
	if err != nil {
		writeStatus(w, http.StatusInternalServerError, metav1.StatusReasonInternalError, err.Error())
		return
	}
	writeBody(w, r, contentType, body)
}

// writeBody writes body with an ETag, answering 304 when the client's
// If-None-Match already names it.
func writeBody(w http.ResponseWriter, r *http.Request, contentType string, body []byte) {
	sum := sha256.Sum256(body)
	etag := `"` + hex.EncodeToString(sum[:16]) + `"`
	w.Header().Set("ETag", etag)
	w.Header().Set("Vary", "Accept")
	if match := r.Header.Get("If-None-Match"); match != "" && strings.Contains(match, etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

// writeStatus writes a metav1.Status failure.
func writeStatus(w http.ResponseWriter, code int, reason metav1.StatusReason, message string) {
	body, _ := json.Marshal(&metav1.Status{
		TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status:   metav1.StatusFailure,
		Message:  message,
		Reason:   reason,
		Code:     int32(code),
	})
	w.Header().Set("Content-Type", contentTypeJSON)
	w.WriteHeader(code)
	_, _ = w.Write(body)
}
