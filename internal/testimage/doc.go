// Package testimage builds, without a registry, a tiny container image from
// Debian's busybox-static binary: a root filesystem with /bin/busybox and a
// symlink per applet (sh, sleep, httpd, cat, wget, nc, ...), written either
// as a docker-save tarball or as an OCI image-layout tarball. containerd's
// Import accepts both, so tests (and `synod image import` on a machine
// without internet) can run real containers.
//
// The archives are deterministic (fixed timestamps and owners), so the
// same busybox binary always gives the same image digest.
package testimage
