package apiserver

import (
	"synod/apiserver/printers"
	"synod/apiserver/validation"
)

// defaultHooks wires the kind-specific packages into the REST flow.
func defaultHooks() hooks {
	return hooks{
		table:            printers.Table,
		defaults:         validation.Default,
		prepareForUpdate: validation.PrepareForUpdate,
		validateCreate:   validation.ValidateCreate,
		validateUpdate:   validation.ValidateUpdate,
	}
}
