package apiserver

import "synod/apiserver/printers"

// defaultHooks wires the kind-specific packages into the REST flow.
func defaultHooks() hooks {
	return hooks{table: printers.Table}
}
