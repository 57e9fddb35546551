package printers

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// TestHeaders checks the headers kubectl get (and -o wide) prints per kind.
func TestHeaders(t *testing.T) {
	for kind, want := range map[string][2]string{
		"Pod":                {"NAME READY STATUS RESTARTS AGE", "IP NODE NOMINATED NODE READINESS GATES"},
		"Node":               {"NAME STATUS ROLES AGE VERSION", "INTERNAL-IP EXTERNAL-IP OS-IMAGE KERNEL-VERSION CONTAINER-RUNTIME"},
		"Namespace":          {"NAME STATUS AGE", ""},
		"Service":            {"NAME TYPE CLUSTER-IP EXTERNAL-IP PORT(S) AGE", "SELECTOR"},
		"Endpoints":          {"NAME ENDPOINTS AGE", ""},
		"Event":              {"LAST SEEN TYPE REASON OBJECT MESSAGE", "SUBOBJECT SOURCE FIRST SEEN COUNT NAME"},
		"ConfigMap":          {"NAME DATA AGE", ""},
		"Secret":             {"NAME TYPE DATA AGE", ""},
		"ServiceAccount":     {"NAME SECRETS AGE", ""},
		"Deployment":         {"NAME READY UP-TO-DATE AVAILABLE AGE", "CONTAINERS IMAGES SELECTOR"},
		"ReplicaSet":         {"NAME DESIRED CURRENT READY AGE", "CONTAINERS IMAGES SELECTOR"},
		"DaemonSet":          {"NAME DESIRED CURRENT READY UP-TO-DATE AVAILABLE NODE SELECTOR AGE", "CONTAINERS IMAGES SELECTOR"},
		"Job":                {"NAME STATUS COMPLETIONS DURATION AGE", "CONTAINERS IMAGES SELECTOR"},
		"Lease":              {"NAME HOLDER AGE", ""},
		"EndpointSlice":      {"NAME ADDRESSTYPE PORTS ENDPOINTS AGE", ""},
		"Role":               {"NAME CREATED AT", ""},
		"ClusterRole":        {"NAME CREATED AT", ""},
		"RoleBinding":        {"NAME ROLE AGE", "USERS GROUPS SERVICEACCOUNTS"},
		"ClusterRoleBinding": {"NAME ROLE AGE", "USERS GROUPS SERVICEACCOUNTS"},
	} {
		cols, ok := Columns(kind)
		if !ok {
			t.Errorf("%s: no columns", kind)
			continue
		}
		normal, wideOnly := columnNames(cols)
		if got := strings.ToUpper(strings.Join(normal, " ")); got != want[0] {
			t.Errorf("%s: headers %q, want %q", kind, got, want[0])
		}
		if got := strings.ToUpper(strings.Join(wideOnly, " ")); got != want[1] {
			t.Errorf("%s: wide headers %q, want %q", kind, got, want[1])
		}
		names := 0
		for _, c := range cols {
			if c.Description == "" {
				t.Errorf("%s: column %q has no description", kind, c.Name)
			}
			if c.Format == "name" {
				names++
			}
		}
		if names != 1 {
			t.Errorf("%s: %d name-format columns, want 1", kind, names)
		}
		if kind != "Event" && cols[0].Format != "name" {
			t.Errorf("%s: first column %q is not the name column", kind, cols[0].Name)
		}
	}
}

func TestColumnsUnknownAndCopy(t *testing.T) {
	if _, ok := Columns("Widget"); ok {
		t.Error("Columns(Widget) ok")
	}
	cols, _ := Columns("Pod")
	cols[0].Name = "changed"
	if again, _ := Columns("Pod"); again[0].Name != "Name" {
		t.Error("Columns returned the registry's slice")
	}
}

func TestTable(t *testing.T) {
	done := &corev1.Pod{ObjectMeta: objMeta("done"), Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c"}}},
		Status: corev1.PodStatus{Phase: corev1.PodSucceeded}}
	running := &corev1.Pod{ObjectMeta: objMeta("running"), Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c"}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning}}
	tbl, err := Table("Pod", []runtime.Object{running, done}, now)
	if err != nil {
		t.Fatal(err)
	}
	if tbl.Kind != "Table" || tbl.APIVersion != "meta.k8s.io/v1" {
		t.Errorf("TypeMeta = %+v", tbl.TypeMeta)
	}
	if len(tbl.ColumnDefinitions) != 9 || len(tbl.Rows) != 2 {
		t.Fatalf("%d columns, %d rows", len(tbl.ColumnDefinitions), len(tbl.Rows))
	}
	if tbl.Rows[0].Cells[0] != "running" || tbl.Rows[1].Cells[0] != "done" {
		t.Errorf("rows out of order: %v, %v", tbl.Rows[0].Cells[0], tbl.Rows[1].Cells[0])
	}
	if tbl.Rows[0].Conditions != nil {
		t.Errorf("running pod conditions = %v", tbl.Rows[0].Conditions)
	}
	if c := tbl.Rows[1].Conditions; len(c) != 1 || c[0].Type != metav1.RowCompleted || c[0].Reason != "Succeeded" {
		t.Errorf("succeeded pod conditions = %v", c)
	}
	if tbl.Rows[0].Object.Raw != nil || tbl.Rows[0].Object.Object != nil {
		t.Error("row object filled")
	}

	// An empty table still serializes rows as [] and carries the columns.
	empty, err := Table("Node", nil, now)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(empty)
	if !strings.Contains(string(b), `"rows":[]`) || len(empty.ColumnDefinitions) != 10 {
		t.Errorf("empty table: %s", b)
	}

	// A mismatched object is an error, not a panic.
	if _, err := Table("Pod", []runtime.Object{&corev1.Node{}}, now); err == nil {
		t.Error("Table(Pod, Node) succeeded")
	}
	if _, err := Table("Pod", []runtime.Object{(*corev1.Pod)(nil)}, now); err == nil {
		t.Error("Table with nil pod succeeded")
	}
	if _, err := Row(nil, now); err == nil {
		t.Error("Row(nil) succeeded")
	}
}

// TestDefaultTable checks kinds without a printer: kube-apiserver's default
// table convertor, Name and Created At as an RFC 3339 UTC date.
func TestDefaultTable(t *testing.T) {
	created := metav1.Date(2024, 12, 1, 9, 30, 0, 0, time.FixedZone("CET", 3600))
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "pod-reader", Namespace: "default", CreationTimestamp: created}}
	got, err := Row(role, now)
	if err != nil {
		t.Fatal(err)
	}
	if want := []interface{}{"pod-reader", "2024-12-01T08:30:00Z"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Role row = %#v, want %#v", got, want)
	}
	cols, _ := Columns("ClusterRole")
	if cols[1].Name != "Created At" || cols[1].Type != "date" {
		t.Errorf("ClusterRole columns = %+v", cols)
	}

	// An unknown kind (any object with metadata) falls back the same way.
	tbl, err := Table("Widget", []runtime.Object{&corev1.PodTemplate{ObjectMeta: metav1.ObjectMeta{Name: "tpl", CreationTimestamp: created}}}, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(tbl.ColumnDefinitions) != 2 || tbl.ColumnDefinitions[0].Name != "Name" || tbl.ColumnDefinitions[1].Name != "Created At" {
		t.Errorf("unknown kind columns = %+v", tbl.ColumnDefinitions)
	}
	if want := []interface{}{"tpl", "2024-12-01T08:30:00Z"}; !reflect.DeepEqual(tbl.Rows[0].Cells, want) {
		t.Errorf("unknown kind row = %#v", tbl.Rows[0].Cells)
	}
	if _, err := Row(&metav1.Status{}, now); err == nil {
		t.Error("Row(Status) without object metadata succeeded")
	}
}
