package testimage

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// BusyboxPath is where Debian's busybox-static package installs its binary.
const BusyboxPath = "/bin/busybox"

// Ref is the name the docker-save archive carries; RefOCI the OCI one
// (different tags, so a test can import both and tell them apart).
const (
	Ref    = "docker.io/library/busybox:synod-test"
	RefOCI = "docker.io/library/busybox:synod-test-oci"
)

// Format selects the archive layout.
type Format int

const (
	// DockerSave is `docker save`'s layout: manifest.json, the config
	// blob and one uncompressed layer tar.
	DockerSave Format = iota
	// OCI is an OCI image layout (oci-layout, index.json, blobs/sha256/).
	OCI
)

// epoch is the fixed timestamp of every file, so the digest is stable.
var epoch = time.Unix(0, 0).UTC()

// Build writes an image archive of the given format, named ref, to
// dir/busybox-<format>.tar and returns its path. busybox is the static
// binary to put at /bin/busybox (BusyboxPath if empty).
func Build(dir string, format Format, ref, busybox string) (string, error) {
	if busybox == "" {
		busybox = BusyboxPath
	}
	name := "busybox-docker.tar"
	if format == OCI {
		name = "busybox-oci.tar"
	}
	path := filepath.Join(dir, name)
	f, err := os.Create(path)
	if err != nil {
		return "", fmt.Errorf("testimage: %w", err)
	}
	if err := Write(f, format, ref, busybox); err != nil {
		f.Close()
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("testimage: %w", err)
	}
	return path, nil
}

// Busybox builds the docker-save archive in dir and returns its path and
// image reference. Without a static busybox the test is skipped, or fails
// in CI (CI=true), where a missing dependency is an error.
func Busybox(t testing.TB, dir string) (path, ref string) {
	t.Helper()
	return build(t, dir, DockerSave, Ref)
}

// BusyboxOCI is Busybox for the OCI image-layout archive.
func BusyboxOCI(t testing.TB, dir string) (path, ref string) {
	t.Helper()
	return build(t, dir, OCI, RefOCI)
}

func build(t testing.TB, dir string, format Format, ref string) (string, string) {
	t.Helper()
	if err := checkStatic(BusyboxPath); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%v (install busybox-static)", err)
		}
		t.Skipf("%v (install busybox-static)", err)
	}
	path, err := Build(dir, format, ref, BusyboxPath)
	if err != nil {
		t.Fatal(err)
	}
	return path, ref
}

// checkStatic makes sure path is a statically linked ELF executable: the
// image has no libc, so a dynamically linked busybox (Debian's "busybox"
// package, not "busybox-static") would not start.
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("testimage: %s: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("testimage: %s is dynamically linked", path)
		}
	}
	return nil
}

// Write writes the image archive to w.
// busybox is the static binary to use (BusyboxPath if empty).
func Write(w io.Writer, format Format, ref, busybox string) error {
	if busybox == "" {
		busybox = BusyboxPath
	}
	if err := checkStatic(busybox); err != nil {
		return err
	}
	layer, err := rootfs(busybox)
	if err != nil {
		return err
	}
	layerDigest := digest(layer)
	config, err := json.Marshal(map[string]any{
		"architecture": "amd64",
		"os":           "linux",
		"created":      epoch.Format(time.RFC3339),
		"config": map[string]any{
			"Env": []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
			"Cmd": []string{"sh"},
			// httpd serves its working directory: `httpd -f -p 80`
			// answers with /var/www/index.html, the pod's hostname.
			"WorkingDir": "/var/www",
		},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{layerDigest}},
	})
	if err != nil {
		return fmt.Errorf("testimage: config: %w", err)
	}
	tw := tar.NewWriter(w)
	switch format {
	case DockerSave:
		err = writeDockerSave(tw, ref, config, layer)
	case OCI:
		err = writeOCI(tw, ref, config, layer)
	default:
		err = fmt.Errorf("testimage: unknown format %d", format)
	}
	if err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("testimage: %w", err)
	}
	return nil
}

func writeDockerSave(tw *tar.Writer, ref string, config, layer []byte) error {
	configName := strings.TrimPrefix(digest(config), "sha256:") + ".json"
	manifest, err := json.Marshal([]map[string]any{{
		"Config":   configName,
		"RepoTags": []string{ref},
		"Layers":   []string{"layer.tar"},
	}})
	if err != nil {
		return fmt.Errorf("testimage: manifest: %w", err)
	}
	for _, f := range []struct {
		name string
		data []byte
	}{{configName, config}, {"layer.tar", layer}, {"manifest.json", manifest}} {
		if err := addFile(tw, f.name, f.data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func writeOCI(tw *tar.Writer, ref string, config, layer []byte) error {
	desc := func(mediaType string, b []byte) map[string]any {
		return map[string]any{"mediaType": mediaType, "digest": digest(b), "size": len(b)}
	}
	manifest, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        desc("application/vnd.oci.image.config.v1+json", config),
		"layers":        []any{desc("application/vnd.oci.image.layer.v1.tar", layer)},
	})
	if err != nil {
		return fmt.Errorf("testimage: manifest: %w", err)
	}
	md := desc("application/vnd.oci.image.manifest.v1+json", manifest)
	md["platform"] = map[string]string{"architecture": "amd64", "os": "linux"}
	// containerd names the image after io.containerd.image.name; other
	// tools read the OCI ref name, which by convention is the tag only.
	tag := ref[strings.LastIndex(ref, ":")+1:]
	md["annotations"] = map[string]string{
		"io.containerd.image.name":          ref,
		"org.opencontainers.image.ref.name": tag,
	}
	index, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.index.v1+json",
		"manifests":     []any{md},
	})
	if err != nil {
		return fmt.Errorf("testimage: index: %w", err)
	}
	if err := addDir(tw, "blobs/"); err != nil {
		return err
	}
	if err := addDir(tw, "blobs/sha256/"); err != nil {
		return err
	}
	for _, b := range [][]byte{config, layer, manifest} {
		if err := addFile(tw, "blobs/sha256/"+strings.TrimPrefix(digest(b), "sha256:"), b, 0o644); err != nil {
			return err
		}
	}
	if err := addFile(tw, "oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644); err != nil {
		return err
	}
	return addFile(tw, "index.json", index, 0o644)
}

// rootfs returns the layer tar: the usual top-level directories, the
// busybox binary, one symlink per applet, and minimal /etc files.
func rootfs(busybox string) ([]byte, error) {
	bin, err := os.ReadFile(busybox)
	if err != nil {
		return nil, fmt.Errorf("testimage: %w", err)
	}
	applets, err := appletList(busybox)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, d := range []string{"bin/", "dev/", "etc/", "proc/", "sys/", "root/", "var/", "var/www/", "usr/", "usr/bin/", "sbin/"} {
		if err := addDir(tw, d); err != nil {
			return nil, err
		}
	}
	if err := addDirMode(tw, "tmp/", 0o1777); err != nil {
		return nil, err
	}
	if err := addFile(tw, "bin/busybox", bin, 0o755); err != nil {
		return nil, err
	}
	for _, a := range applets {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + a, Linkname: "busybox", Mode: 0o777, ModTime: epoch, Format: tar.FormatPAX}); err != nil {
			return nil, fmt.Errorf("testimage: %w", err)
		}
	}
	etc := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
		"etc/group":  "root:x:0:\nnogroup:x:65534:\n",
		"etc/hosts":  "127.0.0.1 localhost\n",
	}
	names := make([]string, 0, len(etc))
	for n := range etc {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := addFile(tw, n, []byte(etc[n]), 0o644); err != nil {
			return nil, err
		}
	}
	// The page names the pod that served it (the kubelet mounts the pod's
	// /etc/hostname), so a client can see a Service spread its requests.
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "var/www/index.html", Linkname: "/etc/hostname", Mode: 0o777, ModTime: epoch, Format: tar.FormatPAX}); err != nil {
		return nil, fmt.Errorf("testimage: %w", err)
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("testimage: %w", err)
	}
	return buf.Bytes(), nil
}

// appletList asks the binary which applets it has (`busybox --list`), so
// the image offers exactly what this busybox build can do.
func appletList(busybox string) ([]string, error) {
	out, err := exec.Command(busybox, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("testimage: %s --list: %w", busybox, err)
	}
	var applets []string
	for _, a := range strings.Fields(string(out)) {
		if a == "busybox" || strings.ContainsAny(a, "/") {
			continue
		}
		applets = append(applets, a)
	}
	if len(applets) == 0 {
		return nil, errors.New("testimage: busybox lists no applets")
	}
	sort.Strings(applets)
	return applets, nil
}

func addDir(tw *tar.Writer, name string) error { return addDirMode(tw, name, 0o755) }

func addDirMode(tw *tar.Writer, name string, mode int64) error {
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode, ModTime: epoch, Format: tar.FormatPAX}); err != nil {
		return fmt.Errorf("testimage: %w", err)
	}
	return nil
}

func addFile(tw *tar.Writer, name string, data []byte, mode int64) error {
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data)), ModTime: epoch, Format: tar.FormatPAX}); err != nil {
		return fmt.Errorf("testimage: %w", err)
	}
	if _, err := tw.Write(data); err != nil {
		return fmt.Errorf("testimage: %w", err)
	}
	return nil
}

func digest(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}
