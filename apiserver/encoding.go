package apiserver

import (
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/kubernetes/scheme"
)

// maxBodyBytes bounds a request body. Objects must also fit the store's
// 1.5 MiB request limit; a larger body is refused before it is decoded.
const maxBodyBytes = 3 << 20

func groupResource(group, resource string) schema.GroupResource {
	return schema.GroupResource{Group: group, Resource: resource}
}

// writeJSON writes v as JSON with the given status code.
func writeJSON(w http.ResponseWriter, code int, contentType string, v any) {
	if contentType == "" {
		contentType = "application/json"
	}
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.Encode(v)
}

// writeError writes err as a Kubernetes Status.
func writeError(w http.ResponseWriter, err error) {
	st := apierrors.APIStatus(nil)
	if s, ok := err.(apierrors.APIStatus); ok {
		st = s
	} else if se := new(apierrors.StatusError); asStatus(err, &se) {
		st = se
	} else {
		st = apierrors.NewInternalError(err)
	}
	status := st.Status()
	status.Kind, status.APIVersion = "Status", "v1"
	if status.Code == 0 {
		status.Code = http.StatusInternalServerError
	}
	writeJSON(w, int(status.Code), "", status)
}

func asStatus(err error, target **apierrors.StatusError) bool {
	for err != nil {
		if se, ok := err.(*apierrors.StatusError); ok {
			*target = se
			return true
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		err = u.Unwrap()
	}
	return false
}

// readBody reads a request body within maxBodyBytes.
func readBody(r *http.Request) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r.Body, maxBodyBytes+1))
	if err != nil {
		return nil, apierrors.NewBadRequest("reading request body: " + err.Error())
	}
	if len(data) > maxBodyBytes {
		return nil, apierrors.NewRequestEntityTooLargeError(fmt.Sprintf("limit is %d bytes", maxBodyBytes))
	}
	return data, nil
}

// strictCodecs decode like scheme.Codecs but also report unknown and
// duplicate fields (as errors that still carry the decoded object).
var strictCodecs = serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict)

// decodeObject decodes a JSON, YAML or protobuf body into a new object of the
// resource's kind, refusing other kinds. Unknown or duplicate fields follow
// the request's fieldValidation: Strict fails (as kubectl asks), Warn
// (the default) answers with a Warning header, Ignore drops them silently.
func decodeObject(w http.ResponseWriter, r *http.Request, data []byte, want schema.GroupVersionKind, into runtime.Object) error {
	obj, gvk, err := strictCodecs.UniversalDeserializer().Decode(data, &want, into)
	if err != nil && runtime.IsStrictDecodingError(err) {
		switch r.URL.Query().Get("fieldValidation") {
		case "Strict":
			return apierrors.NewBadRequest(fmt.Sprintf("%s in version %q cannot be handled as a %s: %v", want.Kind, want.Version, want.Kind, err))
		case "Ignore":
		default:
			for _, msg := range strictMessages(err) {
				w.Header().Add("Warning", fmt.Sprintf("299 - %q", msg))
			}
		}
		err = nil
	}
	if err != nil {
		return apierrors.NewBadRequest(fmt.Sprintf("the body of the request was in an unknown format or malformed: %v", err))
	}
	if gvk.Kind != want.Kind || gvk.GroupVersion() != want.GroupVersion() {
		return apierrors.NewBadRequest(fmt.Sprintf("the API version in the data (%s) does not match the expected API version (%s) or kind %s", gvk.GroupVersion(), want.GroupVersion(), want.Kind))
	}
	if obj != into {
		return apierrors.NewBadRequest("unexpected object type")
	}
	return nil
}

// wantsTable reports whether the client asked for a server-side Table.
func wantsTable(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil || mt != "application/json" {
			continue
		}
		if params["as"] == "Table" && params["g"] == "meta.k8s.io" && (params["v"] == "v1" || params["v"] == "v1beta1") {
			return true
		}
		if params["as"] == "" {
			return false // plain JSON preferred before any Table
		}
	}
	return false
}

const tableContentType = "application/json;as=Table;v=v1;g=meta.k8s.io"

// wantsMetadata reports whether the client asked for PartialObjectMetadata
// (or a PartialObjectMetadataList): k8s.io/client-go/metadata does, for the
// garbage collector's and namespace controller's informers and lists.
func wantsMetadata(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil || mt != "application/json" {
			continue
		}
		if strings.HasPrefix(params["as"], "PartialObjectMetadata") && params["g"] == "meta.k8s.io" && (params["v"] == "v1" || params["v"] == "v1beta1") {
			return true
		}
		if params["as"] == "" {
			return false
		}
	}
	return false
}

// metadataOf is obj as a meta.k8s.io/v1 PartialObjectMetadata.
func metadataOf(obj runtime.Object) (*metav1.PartialObjectMetadata, error) {
	m, err := meta.Accessor(obj)
	if err != nil {
		return nil, err
	}
	p := meta.AsPartialObjectMetadata(m)
	p.TypeMeta = metav1.TypeMeta{Kind: "PartialObjectMetadata", APIVersion: "meta.k8s.io/v1"}
	return p, nil
}

// metadataListOf is items as a meta.k8s.io/v1 PartialObjectMetadataList.
func metadataListOf(items []runtime.Object, rv, cont string) (*metav1.PartialObjectMetadataList, error) {
	list := &metav1.PartialObjectMetadataList{
		TypeMeta: metav1.TypeMeta{Kind: "PartialObjectMetadataList", APIVersion: "meta.k8s.io/v1"},
		ListMeta: metav1.ListMeta{ResourceVersion: rv, Continue: cont},
		Items:    make([]metav1.PartialObjectMetadata, 0, len(items)),
	}
	for _, it := range items {
		p, err := metadataOf(it)
		if err != nil {
			return nil, err
		}
		list.Items = append(list.Items, *p)
	}
	return list, nil
}

// statusSuccess is the Status returned by some deletes.
func statusSuccess(details *metav1.StatusDetails) *metav1.Status {
	return &metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusSuccess, Details: details}
}

// decodeAny decodes a JSON, YAML or protobuf body (client-go sends protobuf
// for built-in types) into into, whatever its group version.
func decodeAny(data []byte, into runtime.Object) error {
	if _, _, err := scheme.Codecs.UniversalDeserializer().Decode(data, nil, into); err != nil {
		// Plain JSON without apiVersion/kind is common for options bodies.
		if jerr := json.Unmarshal(data, into); jerr != nil {
			return apierrors.NewBadRequest(fmt.Sprintf("the body of the request was in an unknown format or malformed: %v", err))
		}
	}
	return nil
}

func strictMessages(err error) []string {
	var out []string
	if se, ok := runtime.AsStrictDecodingError(err); ok {
		for _, e := range se.Errors() {
			out = append(out, e.Error())
		}
	}
	if len(out) == 0 {
		out = []string{err.Error()}
	}
	return out
}
