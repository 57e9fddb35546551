package printers

import (
	"fmt"
	"strings"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	rbacv1beta1 "k8s.io/api/rbac/v1beta1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Printers for the rbac.authorization.k8s.io group. kube-apiserver has no
// printer for Role and ClusterRole: they get the default Name/Created At
// table.

func init() {
	registerDefault[*rbacv1.Role]("Role")
	registerDefault[*rbacv1.ClusterRole]("ClusterRole")

	register("RoleBinding", bindingColumns(rbacv1beta1.RoleBinding{}.SwaggerDoc()["roleRef"], "roleBinding"),
		func(b *rbacv1.RoleBinding, now time.Time) []interface{} {
			return bindingRow(b.Name, b.RoleRef, b.Subjects, b.CreationTimestamp, now)
		})
	register("ClusterRoleBinding", bindingColumns(rbacv1beta1.ClusterRoleBinding{}.SwaggerDoc()["roleRef"], "clusterRoleBinding"),
		func(b *rbacv1.ClusterRoleBinding, now time.Time) []interface{} {
			return bindingRow(b.Name, b.RoleRef, b.Subjects, b.CreationTimestamp, now)
		})
}

func bindingColumns(roleRefDoc, what string) []metav1.TableColumnDefinition {
	return []metav1.TableColumnDefinition{
		nameColumn(),
		column("Role", "string", roleRefDoc),
		ageColumn(),
		wide("Users", "string", "Users in the "+what),
		wide("Groups", "string", "Groups in the "+what),
		wide("ServiceAccounts", "string", "ServiceAccounts in the "+what),
	}
}

func bindingRow(name string, ref rbacv1.RoleRef, subjects []rbacv1.Subject, created metav1.Time, now time.Time) []interface{} {
	users, groups, sas := subjectsStrings(subjects)
	return []interface{}{
		name, fmt.Sprintf("%s/%s", ref.Kind, ref.Name), translateTimestampSince(created, now),
		strings.Join(users, ", "), strings.Join(groups, ", "), strings.Join(sas, ", "),
	}
}

// subjectsStrings ports rbac.SubjectsStrings: user names, group names and
// "namespace/name" of service accounts (other kinds are not printed).
func subjectsStrings(subjects []rbacv1.Subject) (users, groups, sas []string) {
	for _, s := range subjects {
		switch s.Kind {
		case rbacv1.ServiceAccountKind:
			sas = append(sas, fmt.Sprintf("%s/%s", s.Namespace, s.Name))
		case rbacv1.UserKind:
			users = append(users, s.Name)
		case rbacv1.GroupKind:
			groups = append(groups, s.Name)
		}
	}
	return users, groups, sas
}
