package printers_test

import (
	"testing"
	"time"

	"synod/apiserver/printers"
	"synod/apiserver/resource"
)

// TestEveryServedKindHasAPrinter checks that every kind in resource.All() has
// columns and that Row gives one cell per column, even for empty objects.
func TestEveryServedKindHasAPrinter(t *testing.T) {
	for _, r := range resource.All() {
		cols, ok := printers.Columns(r.Kind)
		if !ok {
			t.Errorf("%s: no printer", r.Kind)
			continue
		}
		cells, err := printers.Row(r.New(), time.Now())
		if err != nil {
			t.Errorf("%s: Row: %v", r.Kind, err)
			continue
		}
		if len(cells) != len(cols) {
			t.Errorf("%s: %d cells for %d columns", r.Kind, len(cells), len(cols))
		}
		for i, c := range cells {
			if c == nil {
				t.Errorf("%s: cell %q is nil", r.Kind, cols[i].Name)
			}
		}
	}
}
