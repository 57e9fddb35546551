// Package printers turns synod's served objects into meta.k8s.io/v1 Tables,
// the server-side printing kubectl asks for with
// `Accept: application/json;as=Table;v=v1;g=meta.k8s.io`.
//
// The column definitions and cell logic are a hand port of kube-apiserver's
// k8s.io/kubernetes/pkg/printers/internalversion/printers.go (AddHandlers and
// the printPod/printNode/... functions), adapted from internal types to the
// k8s.io/api v1 types. That package cannot be imported: k8s.io/kubernetes is
// not a consumable module. Like kube-apiserver (pkg/printers/storage), every
// row is generated with Wide=true, so rows always carry the priority-1 cells
// and kubectl drops them unless -o wide is given. The output targets what
// kubectl get shows against a Kubernetes 1.32 server.
//
// Kinds without a printer (in kube-apiserver: Role, ClusterRole and anything
// unknown) use the default table convertor of
// k8s.io/apiserver/pkg/registry/rest/table.go: Name and "Created At" (an
// RFC 3339 UTC date, which kubectl shows as "CREATED AT").
package printers

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/duration"

	corev1 "k8s.io/api/core/v1"
)

// printer renders one kind.
type printer struct {
	kind    string
	columns []metav1.TableColumnDefinition
	row     func(obj runtime.Object, now time.Time) ([]interface{}, error)
	// conditions optionally describes a row (pods: RowCompleted).
	conditions func(obj runtime.Object) []metav1.TableRowCondition
}

var (
	byKind = map[string]*printer{}
	byType = map[reflect.Type]*printer{}
)

// register adds the printer for kind, whose objects have Go type T (a
// pointer to a k8s.io/api struct).
func register[T runtime.Object](kind string, columns []metav1.TableColumnDefinition, row func(T, time.Time) []interface{}) *printer {
	var zero T
	p := &printer{kind: kind, columns: columns}
	p.row = func(obj runtime.Object, now time.Time) ([]interface{}, error) {
		t, ok := obj.(T)
		if !ok {
			return nil, fmt.Errorf("printers: cannot print %T as %s", obj, kind)
		}
		return row(t, now), nil
	}
	byKind[kind] = p
	byType[reflect.TypeOf(zero)] = p
	return p
}

// registerDefault declares that kind uses the default Name/Created At
// columns, as kube-apiserver does for kinds without a printer.
func registerDefault[T runtime.Object](kind string) {
	var zero T
	p := &printer{kind: kind, columns: defaultColumns(), row: defaultRow}
	byKind[kind] = p
	byType[reflect.TypeOf(zero)] = p
}

// Columns returns the column definitions for a kind ("Pod", "Node", ...),
// name column first (Event, as in kube-apiserver, starts with Last Seen and
// has Name last); ok=false for an unknown kind.
func Columns(kind string) ([]metav1.TableColumnDefinition, bool) {
	p, ok := byKind[kind]
	if !ok {
		return nil, false
	}
	return cloneColumns(p.columns), true
}

// Row returns the cells for one object (typed k8s.io/api object, e.g.
// *corev1.Pod), in Columns order, all columns including priority-1 ones. now
// is the reference time for ages. Objects of a type without a printer get the
// default Name and Created At cells (they need only object metadata).
func Row(obj runtime.Object, now time.Time) ([]interface{}, error) {
	if isNil(obj) {
		return nil, fmt.Errorf("printers: nil object")
	}
	if p, ok := byType[reflect.TypeOf(obj)]; ok {
		return p.row(obj, now)
	}
	return defaultRow(obj, now)
}

// Table builds a metav1.Table for objs (all of one kind), rows in the given
// order, each row's Object left empty (the caller fills it per
// includeObject). An unknown kind gets the default Name and Created At
// columns. List metadata (resourceVersion, continue) is the caller's.
func Table(kind string, objs []runtime.Object, now time.Time) (*metav1.Table, error) {
	p, ok := byKind[kind]
	if !ok {
		p = &printer{kind: kind, columns: defaultColumns(), row: defaultRow}
	}
	t := &metav1.Table{
		TypeMeta:          metav1.TypeMeta{Kind: "Table", APIVersion: "meta.k8s.io/v1"},
		ColumnDefinitions: cloneColumns(p.columns),
		Rows:              make([]metav1.TableRow, 0, len(objs)),
	}
	for _, obj := range objs {
		if isNil(obj) {
			return nil, fmt.Errorf("printers: nil object in %s table", kind)
		}
		cells, err := p.row(obj, now)
		if err != nil {
			return nil, err
		}
		row := metav1.TableRow{Cells: cells}
		if p.conditions != nil {
			row.Conditions = p.conditions(obj)
		}
		t.Rows = append(t.Rows, row)
	}
	return t, nil
}

// Kinds returns the kinds that have a registered printer, sorted.
func Kinds() []string {
	kinds := make([]string, 0, len(byKind))
	for k := range byKind {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	return kinds
}

func isNil(obj runtime.Object) bool {
	if obj == nil {
		return true
	}
	v := reflect.ValueOf(obj)
	return v.Kind() == reflect.Pointer && v.IsNil()
}

func cloneColumns(cols []metav1.TableColumnDefinition) []metav1.TableColumnDefinition {
	return append([]metav1.TableColumnDefinition(nil), cols...)
}

// --- default table convertor (k8s.io/apiserver/pkg/registry/rest/table.go) ---

func defaultColumns() []metav1.TableColumnDefinition {
	return []metav1.TableColumnDefinition{
		nameColumn(),
		{Name: "Created At", Type: "date", Description: objectMetaDoc["creationTimestamp"]},
	}
}

func defaultRow(obj runtime.Object, _ time.Time) ([]interface{}, error) {
	m, err := meta.Accessor(obj)
	if err != nil {
		return nil, fmt.Errorf("printers: %T does not support being converted to a Table: %w", obj, err)
	}
	return []interface{}{m.GetName(), m.GetCreationTimestamp().Time.UTC().Format(time.RFC3339)}, nil
}

// --- column helpers ---

var objectMetaDoc = metav1.ObjectMeta{}.SwaggerDoc()

func nameColumn() metav1.TableColumnDefinition {
	return metav1.TableColumnDefinition{Name: "Name", Type: "string", Format: "name", Description: objectMetaDoc["name"]}
}

func ageColumn() metav1.TableColumnDefinition {
	return metav1.TableColumnDefinition{Name: "Age", Type: "string", Description: objectMetaDoc["creationTimestamp"]}
}

func column(name, typ, desc string) metav1.TableColumnDefinition {
	return metav1.TableColumnDefinition{Name: name, Type: typ, Description: desc}
}

// wide is a priority-1 column, shown by kubectl only with -o wide.
func wide(name, typ, desc string) metav1.TableColumnDefinition {
	return metav1.TableColumnDefinition{Name: name, Type: typ, Priority: 1, Description: desc}
}

// templateColumns are the wide Containers, Images and Selector columns of
// the workload kinds.
func templateColumns(selectorDesc string) []metav1.TableColumnDefinition {
	return []metav1.TableColumnDefinition{
		wide("Containers", "string", "Names of each container in the template."),
		wide("Images", "string", "Images referenced by each container in the template."),
		wide("Selector", "string", selectorDesc),
	}
}

// --- cell helpers ---

// translateTimestampSince returns the elapsed time from timestamp to now in
// human-readable approximation, as kubectl's AGE columns show it.
func translateTimestampSince(timestamp metav1.Time, now time.Time) string {
	if timestamp.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(now.Sub(timestamp.Time))
}

func translateMicroTimestampSince(timestamp metav1.MicroTime, now time.Time) string {
	if timestamp.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(now.Sub(timestamp.Time))
}

// layoutContainerCells lays out all the containers' names and images on one
// line each, comma separated.
func layoutContainerCells(containers []corev1.Container) (names string, images string) {
	n := make([]string, len(containers))
	im := make([]string, len(containers))
	for i, c := range containers {
		n[i] = c.Name
		im[i] = c.Image
	}
	return strings.Join(n, ","), strings.Join(im, ",")
}

// listWithMoreString joins list, noting how many of count were left out.
func listWithMoreString(list []string, more bool, count, max int) string {
	ret := strings.Join(list, ",")
	if more {
		return fmt.Sprintf("%s + %d more...", ret, count-max)
	}
	if ret == "" {
		ret = "<unset>"
	}
	return ret
}
