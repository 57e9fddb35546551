package testimage

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"testing"
)

// entries reads an archive's file names and contents.
func entries(t *testing.T, path string) map[string][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out[h.Name] = b
	}
}

func TestDockerSaveLayout(t *testing.T) {
	path, ref := Busybox(t, t.TempDir())
	files := entries(t, path)
	var manifest []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	if err := json.Unmarshal(files["manifest.json"], &manifest); err != nil {
		t.Fatalf("manifest.json: %v", err)
	}
	if len(manifest) != 1 || len(manifest[0].RepoTags) != 1 || manifest[0].RepoTags[0] != ref {
		t.Fatalf("manifest = %+v, want one image tagged %s", manifest, ref)
	}
	if _, ok := files[manifest[0].Config]; !ok {
		t.Fatalf("config %s missing", manifest[0].Config)
	}
	if _, ok := files["layer.tar"]; !ok {
		t.Fatal("layer.tar missing")
	}
	// The layer holds busybox and an sh symlink to it.
	tr := tar.NewReader(bytes.NewReader(files["layer.tar"]))
	found := map[string]string{}
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		found[h.Name] = h.Linkname
	}
	if _, ok := found["bin/busybox"]; !ok {
		t.Error("bin/busybox missing from layer")
	}
	for _, a := range []string{"sh", "sleep", "httpd", "cat", "echo", "nc", "wget"} {
		if found["bin/"+a] != "busybox" {
			t.Errorf("bin/%s is not a symlink to busybox", a)
		}
	}
}

func TestOCILayoutAndDeterminism(t *testing.T) {
	dir := t.TempDir()
	path, ref := BusyboxOCI(t, dir)
	files := entries(t, path)
	var index struct {
		Manifests []struct {
			Digest      string
			Annotations map[string]string
		}
	}
	if err := json.Unmarshal(files["index.json"], &index); err != nil {
		t.Fatalf("index.json: %v", err)
	}
	if len(index.Manifests) != 1 || index.Manifests[0].Annotations["io.containerd.image.name"] != ref {
		t.Fatalf("index = %+v, want one manifest named %s", index, ref)
	}
	if _, ok := files["blobs/sha256/"+index.Manifests[0].Digest[len("sha256:"):]]; !ok {
		t.Fatal("manifest blob missing")
	}
	if _, ok := files["oci-layout"]; !ok {
		t.Fatal("oci-layout missing")
	}
	// A second build is byte-for-byte the same.
	first, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	again, err := Build(t.TempDir(), OCI, ref, "")
	if err != nil {
		t.Fatal(err)
	}
	second, err := os.ReadFile(again)
	if err != nil {
		t.Fatal(err)
	}
	if string(first) != string(second) {
		t.Fatal("two builds differ")
	}
}

func TestRejectsDynamicBinary(t *testing.T) {
	// /bin/ls is dynamically linked on Debian: the image would not run.
	if _, err := os.Stat("/bin/ls"); err != nil {
		t.Skip("no /bin/ls")
	}
	if err := Write(io.Discard, DockerSave, Ref, "/bin/ls"); err == nil {
		t.Fatal("Write accepted a dynamically linked binary")
	}
}
