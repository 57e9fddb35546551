package printers

import (
	"reflect"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// now is the reference time of every test; objects are created relative to it.
var now = time.Date(2025, 1, 15, 12, 0, 0, 0, time.UTC)

func ago(d time.Duration) metav1.Time { return metav1.NewTime(now.Add(-d)) }

func agoPtr(d time.Duration) *metav1.Time { t := ago(d); return &t }

const day = 24 * time.Hour

func objMeta(name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: "default", CreationTimestamp: ago(10 * day)}
}

func ptr[T any](v T) *T { return &v }

type rowCase struct {
	name string
	obj  runtime.Object
	want []interface{}
}

// checkRows asserts that Row gives want for each case, and that the cell
// count matches the kind's columns.
func checkRows(t *testing.T, kind string, cases []rowCase) {
	t.Helper()
	cols, ok := Columns(kind)
	if !ok {
		t.Fatalf("no columns for %s", kind)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Row(tc.obj, now)
			if err != nil {
				t.Fatalf("Row: %v", err)
			}
			if len(got) != len(cols) {
				t.Fatalf("got %d cells for %d columns: %#v", len(got), len(cols), got)
			}
			if !reflect.DeepEqual(got, tc.want) {
				for i := range got {
					if i < len(tc.want) && !reflect.DeepEqual(got[i], tc.want[i]) {
						t.Errorf("column %q: got %#v, want %#v", cols[i].Name, got[i], tc.want[i])
					}
				}
				t.Fatalf("got  %#v\nwant %#v", got, tc.want)
			}
		})
	}
}

// columnNames returns the upper-cased headers kubectl prints, split into
// normal and wide-only ones.
func columnNames(cols []metav1.TableColumnDefinition) (normal, wideOnly []string) {
	for _, c := range cols {
		if c.Priority == 0 {
			normal = append(normal, c.Name)
		} else {
			wideOnly = append(wideOnly, c.Name)
		}
	}
	return normal, wideOnly
}
