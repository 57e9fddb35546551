package auth_test

import (
	"fmt"
	"net/http/httptest"

	"synod/apiserver/auth"
)

func ExampleForbidden() {
	w := httptest.NewRecorder()
	auth.Forbidden(w, auth.Attributes{
		User:            &auth.User{Name: "alice"},
		Verb:            "list",
		Namespace:       "default",
		Resource:        "pods",
		ResourceRequest: true,
	}, "")
	fmt.Print(w.Code, " ", w.Body.String())
	// Output:
	// 403 {"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"pods is forbidden: User \"alice\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\"","reason":"Forbidden","details":{"kind":"pods"},"code":403}
}
