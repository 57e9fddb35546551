package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net"
	"time"
)

// DefaultValidity is used by IssueServing and IssueClient when they are
// given a validity <= 0.
const DefaultValidity = 365 * 24 * time.Hour

// ServingCommonName is the subject CN of apiserver serving certificates.
// Clients verify the SANs, never the CN.
const ServingCommonName = "synod-apiserver"

// DefaultServingHosts are the SANs every serving certificate carries, so
// that local tools and in-cluster clients (which dial "kubernetes.default.svc")
// verify the apiserver without extra flags.
var DefaultServingHosts = []string{
	"localhost",
	"127.0.0.1",
	"kubernetes",
	"kubernetes.default",
	"kubernetes.default.svc",
	"kubernetes.default.svc.cluster.local",
}

// IssueServing returns a PEM certificate and key for a TLS server, signed by
// the CA. The SANs are DefaultServingHosts plus hosts; each host that
// parses as an IP address becomes an IP SAN, the rest DNS SANs. Duplicates
// and empty strings are dropped. The certificate never outlives the CA.
func (ca *CA) IssueServing(hosts []string, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: ServingCommonName},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	addHosts(tmpl, hosts)
	return ca.issue(tmpl, validity)
}

// addHosts puts DefaultServingHosts and hosts into tmpl's SANs: IPs as IP
// SANs, the rest as DNS SANs, without duplicates or empty strings.
func addHosts(tmpl *x509.Certificate, hosts []string) {
	seen := map[string]bool{}
	for _, h := range append(append([]string(nil), DefaultServingHosts...), hosts...) {
		if h == "" || seen[h] {
			continue
		}
		seen[h] = true
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
}

// IssuePeer returns a PEM certificate and key usable both as a TLS server
// and as a TLS client, as members of a cluster that authenticate each other
// with one certificate (mutual TLS on the peer port) need.
func (ca *CA) IssuePeer(hosts []string, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: ServingCommonName},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	addHosts(tmpl, hosts)
	return ca.issue(tmpl, validity)
}

// IssueClient returns a PEM certificate and key for TLS client
// authentication as user: the subject CN is user and each group becomes an
// O (organization), which is how Kubernetes' x509 authenticator, and
// apiserver/auth, read the identity back.
func (ca *CA) IssueClient(user string, groups []string, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	if user == "" {
		return nil, nil, errors.New("pki: client certificate needs a user name")
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: user, Organization: append([]string(nil), groups...)},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	return ca.issue(tmpl, validity)
}

// issue fills in the key, serial and validity window of tmpl and signs it.
func (ca *CA) issue(tmpl *x509.Certificate, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	if validity <= 0 {
		validity = DefaultValidity
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: generate key: %w", err)
	}
	if tmpl.SerialNumber, err = newSerial(); err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl.NotBefore = now.Add(-clockSkew)
	tmpl.NotAfter = now.Add(validity)
	if tmpl.NotAfter.After(ca.cert.NotAfter) {
		tmpl.NotAfter = ca.cert.NotAfter
	}
	tmpl.BasicConstraintsValid = true
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: sign %q: %w", tmpl.Subject.CommonName, err)
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return encodeCert(der), keyPEM, nil
}
