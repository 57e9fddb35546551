package discovery

import (
	"net/http"
	"strings"

	openapiv2 "github.com/google/gnostic-models/openapiv2"
	"google.golang.org/protobuf/proto"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// contentTypeOpenAPIProto is the protobuf OpenAPI v2 media type in the form
// Go's mime parser accepts; kubectl asks for the "spec.v2@v1.0" spelling,
// but client-go only checks the response status and body.
const contentTypeOpenAPIProto = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"

// openAPIV2 is the served OpenAPI v2 document: a valid swagger 2.0 header
// with no paths and no definitions. kubectl's client-side validation then
// finds no schema for any kind and skips it, and kubectl apply falls back
// to the strategic-merge-patch metadata compiled into its Go types, which
// is exact for every built-in kind synod serves.
//
// A document with real definitions would need the generated OpenAPI
// definitions of k8s.io/api, which live in k8s.io/kubernetes, not in any
// module synod depends on.
var openAPIV2 = &openapiv2.Document{
	Swagger:     "2.0",
	Info:        &openapiv2.Info{Title: "Kubernetes", Version: "v1.32.0"},
	Paths:       &openapiv2.Paths{},
	Definitions: &openapiv2.Definitions{},
}

// openAPIV2JSON is openAPIV2 as JSON.
const openAPIV2JSON = `{"swagger":"2.0","info":{"title":"Kubernetes","version":"v1.32.0"},"paths":{},"definitions":{}}`

// openAPIV2Proto is openAPIV2 as protobuf.
var openAPIV2Proto = func() []byte {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(openAPIV2)
	if err != nil {
		panic("discovery: marshal OpenAPI v2 document: " + err.Error())
	}
	return b
}()

// serveOpenAPIV2 answers /openapi/v2 in protobuf if the client accepts it,
// else in JSON.
func serveOpenAPIV2(w http.ResponseWriter, r *http.Request) {
	if strings.Contains(strings.Join(r.Header.Values("Accept"), ","), "protobuf") {
		writeBody(w, r, contentTypeOpenAPIProto, openAPIV2Proto)
		return
	}
	writeBody(w, r, contentTypeJSON, []byte(openAPIV2JSON))
}

// serveOpenAPIV3 answers /openapi/v3 and below with 404; kubectl then
// falls back to /openapi/v2.
func serveOpenAPIV3(w http.ResponseWriter, r *http.Request) {
	writeStatus(w, http.StatusNotFound, metav1.StatusReasonNotFound,
		"the server could not find the requested resource")
}
