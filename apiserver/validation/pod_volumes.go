package validation

import (
	"path"
	"reflect"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Pod volume validation (ValidateVolumes, validateVolumeSource and the path
// helpers), ported by hand from kubernetes pkg/apis/core/validation.

// validateVolumes returns the names of the valid volumes, for volumeMount checks.
func validateVolumes(vols []corev1.Volume, fldPath *field.Path) (map[string]bool, field.ErrorList) {
	var errs field.ErrorList
	names := map[string]bool{}
	for i := range vols {
		v := &vols[i]
		idxPath := fldPath.Index(i)
		namePath := idxPath.Child("name")
		el := validateVolumeSource(&v.VolumeSource, idxPath)
		if v.Name == "" {
			el = append(el, field.Required(namePath, ""))
		} else {
			el = append(el, validateDNS1123Label(v.Name, namePath)...)
		}
		if names[v.Name] {
			el = append(el, field.Duplicate(namePath, v.Name))
		}
		if len(el) == 0 {
			names[v.Name] = true
		} else {
			errs = append(errs, el...)
		}
	}
	return names, errs
}

func volumeSourceCount(vs *corev1.VolumeSource) int {
	n := 0
	rv := reflect.ValueOf(vs).Elem()
	for i := 0; i < rv.NumField(); i++ {
		if f := rv.Field(i); f.Kind() == reflect.Ptr && !f.IsNil() {
			n++
		}
	}
	return n
}

const fileModeErrorMsg = "must be a number between 0 and 0777 (octal), both inclusive"

func validateFileMode(mode *int32, fldPath *field.Path) field.ErrorList {
	if mode != nil && (*mode > 0777 || *mode < 0) {
		return field.ErrorList{field.Invalid(fldPath, *mode, fileModeErrorMsg)}
	}
	return nil
}

func validateVolumeSource(vs *corev1.VolumeSource, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch n := volumeSourceCount(vs); {
	case n == 0:
		return field.ErrorList{field.Required(fldPath, "must specify a volume type")}
	case n > 1:
		errs = append(errs, field.Forbidden(fldPath, "may not specify more than 1 volume type"))
	}
	if hp := vs.HostPath; hp != nil {
		p := fldPath.Child("hostPath")
		if hp.Path == "" {
			errs = append(errs, field.Required(p.Child("path"), ""))
		} else {
			errs = append(errs, validatePathNoBacksteps(hp.Path, p.Child("path"))...)
		}
		if hp.Type != nil {
			switch *hp.Type {
			case corev1.HostPathUnset, corev1.HostPathDirectoryOrCreate, corev1.HostPathDirectory, corev1.HostPathFileOrCreate,
				corev1.HostPathFile, corev1.HostPathSocket, corev1.HostPathCharDev, corev1.HostPathBlockDev:
			default:
				errs = append(errs, field.NotSupported(p.Child("type"), *hp.Type, []corev1.HostPathType{corev1.HostPathUnset, corev1.HostPathDirectoryOrCreate,
					corev1.HostPathDirectory, corev1.HostPathFileOrCreate, corev1.HostPathFile, corev1.HostPathSocket, corev1.HostPathCharDev, corev1.HostPathBlockDev}))
			}
		}
	}
	if ed := vs.EmptyDir; ed != nil {
		if ed.SizeLimit != nil && ed.SizeLimit.Sign() < 0 {
			errs = append(errs, field.Forbidden(fldPath.Child("emptyDir").Child("sizeLimit"), "SizeLimit field must be a valid resource quantity"))
		}
	}
	if s := vs.Secret; s != nil {
		p := fldPath.Child("secret")
		if s.SecretName == "" {
			errs = append(errs, field.Required(p.Child("secretName"), ""))
		}
		errs = append(errs, validateFileMode(s.DefaultMode, p.Child("defaultMode"))...)
		errs = append(errs, validateKeyToPaths(s.Items, p.Child("items"))...)
	}
	if c := vs.ConfigMap; c != nil {
		p := fldPath.Child("configMap")
		if c.Name == "" {
			errs = append(errs, field.Required(p.Child("name"), ""))
		}
		errs = append(errs, validateFileMode(c.DefaultMode, p.Child("defaultMode"))...)
		errs = append(errs, validateKeyToPaths(c.Items, p.Child("items"))...)
	}
	if c := vs.PersistentVolumeClaim; c != nil && c.ClaimName == "" {
		errs = append(errs, field.Required(fldPath.Child("persistentVolumeClaim", "claimName"), ""))
	}
	if d := vs.DownwardAPI; d != nil {
		p := fldPath.Child("downwardAPI")
		errs = append(errs, validateFileMode(d.DefaultMode, p.Child("defaultMode"))...)
		for i, item := range d.Items {
			ip := p.Child("items").Index(i)
			if item.Path == "" {
				errs = append(errs, field.Required(ip.Child("path"), ""))
			} else {
				errs = append(errs, validateLocalNonReservedPath(item.Path, ip.Child("path"))...)
			}
			errs = append(errs, validateFileMode(item.Mode, ip.Child("mode"))...)
			if (item.FieldRef == nil) == (item.ResourceFieldRef == nil) {
				errs = append(errs, field.Required(ip, "one and only one of fieldRef and resourceFieldRef is required"))
			}
		}
	}
	if pr := vs.Projected; pr != nil {
		p := fldPath.Child("projected")
		errs = append(errs, validateFileMode(pr.DefaultMode, p.Child("defaultMode"))...)
		for i, src := range pr.Sources {
			sp := p.Child("sources").Index(i)
			n := 0
			if src.Secret != nil {
				n++
				errs = append(errs, validateKeyToPaths(src.Secret.Items, sp.Child("secret", "items"))...)
			}
			if src.ConfigMap != nil {
				n++
				errs = append(errs, validateKeyToPaths(src.ConfigMap.Items, sp.Child("configMap", "items"))...)
			}
			if src.DownwardAPI != nil {
				n++
			}
			if src.ServiceAccountToken != nil {
				n++
				t := src.ServiceAccountToken
				if t.ExpirationSeconds != nil && *t.ExpirationSeconds < 10*60 {
					errs = append(errs, field.Invalid(sp.Child("serviceAccountToken", "expirationSeconds"), *t.ExpirationSeconds, "may not specify a duration less than 10 minutes"))
				}
				if t.Path == "" {
					errs = append(errs, field.Required(sp.Child("serviceAccountToken", "path"), ""))
				}
			}
			if src.ClusterTrustBundle != nil || src.PodCertificate != nil {
				n++
			}
			if n > 1 {
				errs = append(errs, field.Forbidden(sp, "may not specify more than 1 volume type per source"))
			}
		}
	}
	return errs
}

func validateKeyToPaths(items []corev1.KeyToPath, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	for i, kp := range items {
		p := fldPath.Index(i)
		if kp.Key == "" {
			errs = append(errs, field.Required(p.Child("key"), ""))
		}
		if kp.Path == "" {
			errs = append(errs, field.Required(p.Child("path"), ""))
		}
		errs = append(errs, validateLocalNonReservedPath(kp.Path, p.Child("path"))...)
		errs = append(errs, validateFileMode(kp.Mode, p.Child("mode"))...)
	}
	return errs
}

func validatePathNoBacksteps(target string, fldPath *field.Path) field.ErrorList {
	for _, item := range strings.Split(target, "/") {
		if item == ".." {
			return field.ErrorList{field.Invalid(fldPath, target, "must not contain '..'")}
		}
	}
	return nil
}

func validateLocalDescendingPath(target string, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	if path.IsAbs(target) {
		errs = append(errs, field.Invalid(fldPath, target, "must be a relative path"))
	}
	return append(errs, validatePathNoBacksteps(target, fldPath)...)
}

func validateLocalNonReservedPath(target string, fldPath *field.Path) field.ErrorList {
	errs := validateLocalDescendingPath(target, fldPath)
	if strings.HasPrefix(target, "..") && !strings.HasPrefix(target, "../") {
		errs = append(errs, field.Invalid(fldPath, target, "must not start with '..'"))
	}
	return errs
}
