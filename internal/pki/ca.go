// Package pki is synod's small certificate authority: one ECDSA P-256 CA
// kept on disk beside the node's data, serving certificates for the
// apiserver, client certificates whose subject carries the Kubernetes
// identity (CN = user, O = groups), and kubeconfigs that embed them.
//
// It is not a general-purpose PKI: there is no revocation, no intermediate
// CA and no rotation; a lost or leaked ca.key means re-creating the CA and
// re-issuing everything.
package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"time"
)

const (
	// CAName is the common name of the self-signed CA certificate.
	CAName = "synod-ca"

	// CAValidity is how long a newly created CA is valid for.
	CAValidity = 10 * 365 * 24 * time.Hour

	// CACertFile and CAKeyFile are the file names EnsureCA reads and writes
	// inside its directory.
	CACertFile = "ca.crt"
	CAKeyFile  = "ca.key"

	// clockSkew backdates NotBefore so that a certificate issued on one
	// node is already valid on a node whose clock is a little behind.
	clockSkew = 5 * time.Minute
)

var (
	// ErrPartialCA is returned by EnsureCA when only one of ca.crt and
	// ca.key exists: creating a fresh pair would silently orphan every
	// certificate signed by the old one, so EnsureCA refuses.
	ErrPartialCA = errors.New("pki: only one of ca.crt and ca.key exists")

	// ErrKeyMismatch is returned when ca.key does not hold the private key
	// of ca.crt.
	ErrKeyMismatch = errors.New("pki: ca.key does not match ca.crt")
)

// CA is a loaded certificate authority. It is safe for concurrent use: all
// of its methods only read it.
type CA struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	certPEM []byte
}

// EnsureCA loads dir/ca.crt and dir/ca.key, or creates them (a 10-year
// self-signed ECDSA P-256 CA named "synod-ca") when neither exists. The key
// is written 0600, the certificate 0644, the directory (if created) 0700.
// Files are written to a temporary name and renamed, so a crash never
// leaves a half-written CA behind; the key is renamed last, so a crash in
// between leaves only ca.crt and is reported as ErrPartialCA.
func EnsureCA(dir string) (*CA, error) {
	certPath := filepath.Join(dir, CACertFile)
	keyPath := filepath.Join(dir, CAKeyFile)
	certOK, err := exists(certPath)
	if err != nil {
		return nil, err
	}
	keyOK, err := exists(keyPath)
	if err != nil {
		return nil, err
	}
	switch {
	case certOK && keyOK:
		return loadCA(certPath, keyPath)
	case certOK || keyOK:
		return nil, fmt.Errorf("%w (in %s)", ErrPartialCA, dir)
	}
	ca, keyPEM, err := newCA()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("pki: create %s: %w", dir, err)
	}
	if err := writeFileAtomic(certPath, ca.certPEM, 0o644); err != nil {
		return nil, err
	}
	if err := writeFileAtomic(keyPath, keyPEM, 0o600); err != nil {
		return nil, err
	}
	return ca, nil
}

// CertPEM returns the CA certificate, PEM-encoded. Callers must not modify
// the returned slice.
func (ca *CA) CertPEM() []byte { return ca.certPEM }

// Cert returns the parsed CA certificate.
func (ca *CA) Cert() *x509.Certificate { return ca.cert }

// Pool returns a fresh pool holding only the CA certificate, suitable for
// tls.Config.RootCAs and tls.Config.ClientCAs.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

func newCA() (*CA, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: generate CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: CAName},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: self-sign CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: parse new CA: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	ca := &CA{cert: cert, key: key, certPEM: encodeCert(der)}
	return ca, keyPEM, nil
}

func loadCA(certPath, keyPath string) (*CA, error) {
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, fmt.Errorf("pki: read CA cert: %w", err)
	}
	cert, err := ParseCertPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("pki: %s: %w", certPath, err)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("pki: %s is not a CA certificate", certPath)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("pki: read CA key: %w", err)
	}
	key, err := ParseKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("pki: %s: %w", keyPath, err)
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok || !pub.Equal(&key.PublicKey) {
		return nil, ErrKeyMismatch
	}
	return &CA{cert: cert, key: key, certPEM: certPEM}, nil
}

// ParseCertPEM parses the first CERTIFICATE block of data.
func ParseCertPEM(data []byte) (*x509.Certificate, error) {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil, errors.New("no CERTIFICATE PEM block")
		}
		if b.Type == "CERTIFICATE" {
			return x509.ParseCertificate(b.Bytes)
		}
	}
}

// ParseKeyPEM parses the first ECDSA private key of data, in either SEC 1
// ("EC PRIVATE KEY", what this package writes) or PKCS #8 ("PRIVATE KEY")
// form.
func ParseKeyPEM(data []byte) (*ecdsa.PrivateKey, error) {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil, errors.New("no EC PRIVATE KEY or PRIVATE KEY PEM block")
		}
		switch b.Type {
		case "EC PRIVATE KEY":
			return x509.ParseECPrivateKey(b.Bytes)
		case "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
			if err != nil {
				return nil, err
			}
			ek, ok := k.(*ecdsa.PrivateKey)
			if !ok {
				return nil, fmt.Errorf("private key is %T, want ECDSA", k)
			}
			return ek, nil
		}
	}
}

func encodeCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("pki: marshal key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}

// newSerial returns a random positive 128-bit serial number (RFC 5280
// allows up to 20 octets; random serials keep re-created CAs from issuing
// colliding ones).
func newSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	n, err := rand.Int(rand.Reader, limit)
	if err != nil {
		return nil, fmt.Errorf("pki: serial: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}

func exists(path string) (bool, error) {
	_, err := os.Stat(path)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	default:
		return false, fmt.Errorf("pki: %w", err)
	}
}

// writeFileAtomic writes data to path via a temporary file in the same
// directory, fsyncs it, and renames it into place.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op once renamed
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return fmt.Errorf("pki: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("pki: write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("pki: sync %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	return nil
}

// NewEphemeralCA returns a CA that lives only in memory, for certificates
// that never leave the process (the apiserver's loopback connection).
func NewEphemeralCA() (*CA, error) {
	ca, _, err := newCA()
	return ca, err
}
