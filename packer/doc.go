// Package packer holds the synod machine image build, which is not Go: the
// Packer HCL2 templates (*.pkr.hcl) for Debian 12's Packer 1.6.6, the
// debootstrap base disk script (base/build-base.sh), the wrapper `make image`
// runs (build.sh) and the scripts the build runs inside the VM (scripts/),
// among them check-image.sh, which fails the build when the image lacks the
// synod binary, its units or a package.
//
// The Go code here is only packer_test.go: `packer fmt -check` and `packer
// validate` of the templates, and check-image.sh run against unpacked root
// file systems with one piece missing at a time, so `make test` proves the
// check step can fail without building an image.
package packer
