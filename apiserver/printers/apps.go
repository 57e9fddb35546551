package printers

import (
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	extensionsv1beta1 "k8s.io/api/extensions/v1beta1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	corev1 "k8s.io/api/core/v1"
)

// Printers for the apps group. Descriptions come from the extensions/v1beta1
// docs, as in kube-apiserver.

func init() {
	depSpecDoc, depStatusDoc := extensionsv1beta1.DeploymentSpec{}.SwaggerDoc(), extensionsv1beta1.DeploymentStatus{}.SwaggerDoc()
	register("Deployment", append([]metav1.TableColumnDefinition{
		nameColumn(),
		column("Ready", "string", "Number of the pod with ready state"),
		column("Up-to-date", "string", depStatusDoc["updatedReplicas"]),
		column("Available", "string", depStatusDoc["availableReplicas"]),
		ageColumn(),
	}, templateColumns(depSpecDoc["selector"])...), deploymentRow)

	rsSpecDoc, rsStatusDoc := extensionsv1beta1.ReplicaSetSpec{}.SwaggerDoc(), extensionsv1beta1.ReplicaSetStatus{}.SwaggerDoc()
	register("ReplicaSet", append([]metav1.TableColumnDefinition{
		nameColumn(),
		column("Desired", "integer", rsSpecDoc["replicas"]),
		column("Current", "integer", rsStatusDoc["replicas"]),
		column("Ready", "integer", rsStatusDoc["readyReplicas"]),
		ageColumn(),
	}, templateColumns(rsSpecDoc["selector"])...), replicaSetRow)

	dsStatusDoc := extensionsv1beta1.DaemonSetStatus{}.SwaggerDoc()
	register("DaemonSet", append([]metav1.TableColumnDefinition{
		nameColumn(),
		column("Desired", "integer", dsStatusDoc["desiredNumberScheduled"]),
		column("Current", "integer", dsStatusDoc["currentNumberScheduled"]),
		column("Ready", "integer", dsStatusDoc["numberReady"]),
		column("Up-to-date", "integer", dsStatusDoc["updatedNumberScheduled"]),
		column("Available", "integer", dsStatusDoc["numberAvailable"]),
		column("Node Selector", "string", corev1.PodSpec{}.SwaggerDoc()["nodeSelector"]),
		ageColumn(),
	}, templateColumns(extensionsv1beta1.DaemonSetSpec{}.SwaggerDoc()["selector"])...), daemonSetRow)
}

// replicas dereferences spec.replicas; nil means the API default of 1.
func replicas(r *int32) int64 {
	if r == nil {
		return 1
	}
	return int64(*r)
}

func deploymentRow(d *appsv1.Deployment, now time.Time) []interface{} {
	selector := "<invalid>"
	if s, err := metav1.LabelSelectorAsSelector(d.Spec.Selector); err == nil {
		selector = s.String()
	}
	names, images := layoutContainerCells(d.Spec.Template.Spec.Containers)
	return []interface{}{
		d.Name,
		fmt.Sprintf("%d/%d", int64(d.Status.ReadyReplicas), replicas(d.Spec.Replicas)),
		int64(d.Status.UpdatedReplicas),
		int64(d.Status.AvailableReplicas),
		translateTimestampSince(d.CreationTimestamp, now),
		names, images, selector,
	}
}

func replicaSetRow(rs *appsv1.ReplicaSet, now time.Time) []interface{} {
	names, images := layoutContainerCells(rs.Spec.Template.Spec.Containers)
	return []interface{}{
		rs.Name, replicas(rs.Spec.Replicas), int64(rs.Status.Replicas), int64(rs.Status.ReadyReplicas),
		translateTimestampSince(rs.CreationTimestamp, now),
		names, images, metav1.FormatLabelSelector(rs.Spec.Selector),
	}
}

func daemonSetRow(ds *appsv1.DaemonSet, now time.Time) []interface{} {
	st := ds.Status
	names, images := layoutContainerCells(ds.Spec.Template.Spec.Containers)
	return []interface{}{
		ds.Name, int64(st.DesiredNumberScheduled), int64(st.CurrentNumberScheduled), int64(st.NumberReady),
		int64(st.UpdatedNumberScheduled), int64(st.NumberAvailable),
		labels.FormatLabels(ds.Spec.Template.Spec.NodeSelector),
		translateTimestampSince(ds.CreationTimestamp, now),
		names, images, metav1.FormatLabelSelector(ds.Spec.Selector),
	}
}
