package packer_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// requireTools skips the test when a tool is missing, except in CI, where a
// missing tool is a failure (the Makefile's deps target installs them all).
func requireTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is not installed (make deps installs it): %v", tool, err)
			}
			t.Skipf("%s is not installed: %v", tool, err)
		}
	}
}

// run runs a command in dir with a bounded time and returns its combined
// output and exit code (-1 if it did not start or was killed).
func run(t *testing.T, dir string, env []string, name string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	// No version check against the network (there is none here).
	cmd.Env = append(append(os.Environ(), "CHECKPOINT_DISABLE=1"), env...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	if err != nil {
		if exitErr, ok := err.(*exec.ExitError); ok && ctx.Err() == nil {
			return out.String(), exitErr.ExitCode()
		}
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out.String())
	}
	return out.String(), 0
}

func TestPackerFmt(t *testing.T) {
	requireTools(t, "packer")
	out, code := run(t, ".", nil, "packer", "fmt", "-check", "-diff", ".")
	if code != 0 {
		t.Fatalf("packer fmt -check: exit %d; run `packer fmt packer` to fix:\n%s", code, out)
	}
}

// validateFixture makes what packer validate reads from disk: an SSH key for
// each source and the cloud-init seed files. Validate does not read the base
// disk or the cloud image, so dummy paths for those are enough.
func validateFixture(t *testing.T) (dir string, vars []string) {
	t.Helper()
	requireTools(t, "packer", "ssh-keygen")
	dir = t.TempDir()
	if out, code := run(t, dir, nil, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(dir, "build_key")); code != 0 {
		t.Fatalf("ssh-keygen: exit %d\n%s", code, out)
	}
	for _, name := range []string{"user-data", "meta-data"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("{}\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	vars = []string{
		"-var", "base_dir=" + filepath.Join(dir, "base"),
		"-var", "output_dir=" + filepath.Join(dir, "out"),
		"-var", "ssh_private_key_file=" + filepath.Join(dir, "build_key"),
		"-var", "cloud_seed_dir=" + dir,
		"-var", "cloud_image_url=file://" + filepath.Join(dir, "debian-12-genericcloud-amd64.qcow2"),
		"-var", "cloud_image_checksum=sha256:" + strings.Repeat("0", 64),
	}
	return dir, vars
}

func TestPackerValidate(t *testing.T) {
	dir, vars := validateFixture(t)
	env := []string{"PACKER_CACHE_DIR=" + filepath.Join(dir, "cache")}

	args := append(append([]string{"validate"}, vars...), ".")
	if out, code := run(t, ".", env, "packer", args...); code != 0 {
		t.Fatalf("packer validate (both sources): exit %d\n%s", code, out)
	}

	// Validation is not vacuous: bad input is refused with its message.
	for _, tc := range []struct {
		name string
		vars []string
		want string
	}{
		{"bad accelerator", []string{"-var", "accelerator=fast"}, "accelerator must be one of"},
		{"vm_name with a slash", []string{"-var", "vm_name=../x"}, "vm_name must be a plain file name"},
		{"missing build key", []string{"-var", "ssh_private_key_file=" + filepath.Join(dir, "nope")}, "nope"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append(append(append([]string{"validate"}, vars...), tc.vars...), ".")
			out, code := run(t, ".", env, "packer", args...)
			if code == 0 || !strings.Contains(out, tc.want) {
				t.Fatalf("packer validate with %v: exit %d, want non-zero and %q in:\n%s", tc.vars, code, tc.want, out)
			}
		})
	}
}

// TestImagePlaybookSyntax checks that ansible/image.yml, which the build's
// ansible provisioner runs, still parses and finds the synod_common role and
// its dependencies (a renamed role or a broken task file fails here, not
// minutes into an emulated build).
func TestImagePlaybookSyntax(t *testing.T) {
	requireTools(t, "ansible-playbook")
	ansibleDir, err := filepath.Abs(filepath.Join("..", "ansible"))
	if err != nil {
		t.Fatal(err)
	}
	env := []string{
		"ANSIBLE_CONFIG=" + filepath.Join(ansibleDir, "ansible.cfg"),
		"ANSIBLE_LOCAL_TEMP=" + t.TempDir(),
		"ANSIBLE_NOCOLOR=True",
	}
	out, code := run(t, ansibleDir, env, "ansible-playbook", "--syntax-check", "-i", "default,", "image.yml")
	if code != 0 {
		t.Fatalf("ansible-playbook --syntax-check image.yml: exit %d\n%s", code, out)
	}
	out, code = run(t, ansibleDir, env, "ansible-playbook", "--list-tasks", "-i", "default,", "image.yml")
	if code != 0 || !strings.Contains(out, "synod_common :") {
		t.Fatalf("ansible-playbook --list-tasks image.yml: exit %d, want synod_common's tasks:\n%s", code, out)
	}
}

// checkPackages is what check-image.sh requires by default (and
// variables.pkr.hcl's check_packages).
var checkPackages = []string{"containerd", "runc", "containernetworking-plugins", "iptables", "iproute2", "ca-certificates", "conntrack"}

// synodBinary is the binary to put in a fake root: SYNOD_BINARY (make test
// builds it once) or a fresh build.
func synodBinary(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("SYNOD_BINARY"); bin != "" {
		return bin
	}
	bin := filepath.Join(t.TempDir(), "synod")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, ".")
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

var templateVar = regexp.MustCompile(`\{\{\s*([a-z_]+)\s*\}\}`)

// renderUnit renders one of the synod_common role's unit templates with the
// role's defaults, so the fake root carries the units the image really gets.
func renderUnit(t *testing.T, unit string) []byte {
	t.Helper()
	src, err := os.ReadFile(filepath.Join("..", "ansible", "roles", "synod_common", "templates", unit+".j2"))
	if err != nil {
		t.Fatalf("the role's unit template: %v", err)
	}
	values := map[string]string{
		"ansible_managed":   "managed by ansible",
		"synod_binary_dest": "/usr/local/bin/synod",
		"synod_etc_dir":     "/etc/synod",
		"synod_data_dir":    "/var/lib/synod",
	}
	var missing []string
	out := templateVar.ReplaceAllStringFunc(string(src), func(m string) string {
		name := templateVar.FindStringSubmatch(m)[1]
		v, ok := values[name]
		if !ok {
			missing = append(missing, name)
		}
		return v
	})
	if len(missing) > 0 {
		t.Fatalf("%s uses template variables this test does not know: %v", unit, missing)
	}
	return []byte(out)
}

// fakeRoot lays out the parts of a finished image that check-image.sh
// inspects: the binary, the role's units (not enabled), a dpkg database with
// the packages installed, the modules-load and sysctl files.
func fakeRoot(t *testing.T, bin string) string {
	t.Helper()
	root := t.TempDir()
	write := func(rel string, data []byte, mode os.FileMode) {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "usr/local/bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(bin, filepath.Join(root, "usr/local/bin/synod")); err != nil {
		t.Fatal(err)
	}
	for _, unit := range []string{"synod-master.service", "synod-worker.service"} {
		write("etc/systemd/system/"+unit, renderUnit(t, unit), 0o644)
	}
	var status strings.Builder
	for _, p := range checkPackages {
		fmt.Fprintf(&status, "Package: %s\nStatus: install ok installed\nVersion: 1.0\nArchitecture: amd64\nMaintainer: test\nDescription: test\n\n", p)
	}
	write("var/lib/dpkg/status", []byte(status.String()), 0o644)
	write("etc/modules-load.d/synod.conf", []byte("# synod\nbr_netfilter\noverlay\n"), 0o644)
	write("etc/sysctl.d/90-synod.conf", []byte("net.ipv4.ip_forward = 1\nnet.bridge.bridge-nf-call-iptables = 1\n"), 0o644)
	write("root/.ssh/authorized_keys", []byte("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOperatorKeyOnly operator@example\n"), 0o600)
	return root
}

// TestCheckImage proves the build's check step fails when the image lacks
// any one thing it checks, and names what is missing.
func TestCheckImage(t *testing.T) {
	requireTools(t, "bash", "dpkg-query", "systemctl")
	bin := synodBinary(t)
	script, err := filepath.Abs(filepath.Join("scripts", "check-image.sh"))
	if err != nil {
		t.Fatal(err)
	}
	env := []string{"CHECK_PACKAGES=" + strings.Join(checkPackages, " ")}
	check := func(t *testing.T, root string) (string, int) {
		return run(t, root, env, "bash", script, root)
	}

	t.Run("complete image passes", func(t *testing.T) {
		out, code := check(t, fakeRoot(t, bin))
		if code != 0 || !strings.Contains(out, "has everything") {
			t.Fatalf("exit %d, want 0:\n%s", code, out)
		}
	})

	for _, tc := range []struct {
		name    string
		breakIt func(t *testing.T, root string)
		want    string
	}{
		{"binary missing", func(t *testing.T, root string) {
			rm(t, root, "usr/local/bin/synod")
		}, "synod binary /usr/local/bin/synod is missing"},
		{"binary does not run", func(t *testing.T, root string) {
			rm(t, root, "usr/local/bin/synod")
			put(t, root, "usr/local/bin/synod", "\x7fELF truncated", 0o755)
		}, "does not run"},
		{"master unit missing", func(t *testing.T, root string) {
			rm(t, root, "etc/systemd/system/synod-master.service")
		}, "unit synod-master.service is missing"},
		{"worker unit enabled", func(t *testing.T, root string) {
			if out, code := run(t, root, nil, "systemctl", "--root="+root, "enable", "synod-worker.service"); code != 0 {
				t.Fatalf("systemctl enable: exit %d\n%s", code, out)
			}
		}, "unit synod-worker.service is 'enabled', want 'disabled'"},
		{"package removed", func(t *testing.T, root string) {
			p := filepath.Join(root, "var/lib/dpkg/status")
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			data = bytes.Replace(data, []byte("Package: runc\nStatus: install ok installed"), []byte("Package: runc\nStatus: deinstall ok config-files"), 1)
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
		}, "package runc is not installed"},
		{"module not loaded at boot", func(t *testing.T, root string) {
			put(t, root, "etc/modules-load.d/synod.conf", "overlay\n", 0o644)
		}, "module br_netfilter is not in /etc/modules-load.d"},
		{"sysctl not set", func(t *testing.T, root string) {
			put(t, root, "etc/sysctl.d/90-synod.conf", "net.bridge.bridge-nf-call-iptables = 1\n", 0o644)
		}, "sysctl net.ipv4.ip_forward = 1 is not in /etc/sysctl.d"},
		{"build key left", func(t *testing.T, root string) {
			put(t, root, "root/.ssh/authorized_keys", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBuildKey synod-image-build\n", 0o600)
		}, "the build SSH key is still authorized"},
		{"host key left", func(t *testing.T, root string) {
			put(t, root, "etc/ssh/ssh_host_ed25519_key", "key\n", 0o600)
		}, "SSH host keys are baked in"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := fakeRoot(t, bin)
			tc.breakIt(t, root)
			out, code := check(t, root)
			if code != 1 || !strings.Contains(out, tc.want) || !strings.Contains(out, "1 problem(s)") {
				t.Fatalf("exit %d, want 1 with exactly one problem, %q:\n%s", code, tc.want, out)
			}
		})
	}
}

func rm(t *testing.T, root, rel string) {
	t.Helper()
	if err := os.Remove(filepath.Join(root, rel)); err != nil {
		t.Fatal(err)
	}
}

func put(t *testing.T, root, rel, data string, mode os.FileMode) {
	t.Helper()
	p := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
}
