package main

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"net"
	"strconv"
	"time"

	"k8s.io/client-go/rest"

	"synod/apiserver/auth"
	"synod/internal/pki"
)

// loopbackServerName is the TLS server name the master's own components use
// to reach its API, as kube-apiserver's loopback client does: the API
// answers it with a certificate from a CA that exists only in this process,
// so the loopback connection is verified whatever serving certificate the
// operator configured.
const loopbackServerName = "apiserver-loopback-client"

// loopback is the master's private way into its own API: a random bearer
// token for user system:apiserver (group system:masters) and a certificate
// for loopbackServerName.
type loopback struct {
	config        *rest.Config
	authenticator auth.Authenticator
	cert          tls.Certificate
}

func newLoopback(port int, bindAddress string) (*loopback, error) {
	ca, err := pki.NewEphemeralCA()
	if err != nil {
		return nil, fmt.Errorf("loopback CA: %w", err)
	}
	certPEM, keyPEM, err := ca.IssueServing([]string{loopbackServerName}, 10*365*24*time.Hour)
	if err != nil {
		return nil, fmt.Errorf("loopback certificate: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("loopback certificate: %w", err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return nil, fmt.Errorf("loopback token: %w", err)
	}
	token := hex.EncodeToString(raw)
	host := bindAddress
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	cfg := &rest.Config{
		Host:        "https://" + net.JoinHostPort(host, strconv.Itoa(port)),
		BearerToken: token,
		TLSClientConfig: rest.TLSClientConfig{
			ServerName: loopbackServerName,
			CAData:     ca.CertPEM(),
		},
	}
	user := &auth.User{Name: "system:apiserver", Groups: []string{auth.SystemMasters, "system:authenticated"}}
	tokens := auth.NewTokens(map[string]*auth.User{token: user})
	return &loopback{config: cfg, authenticator: tokens, cert: cert}, nil
}

// getCertificate serves the loopback certificate to the loopback client and
// leaves every other handshake to the configured certificate.
func (l *loopback) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if hello.ServerName == loopbackServerName {
		return &l.cert, nil
	}
	return nil, nil
}
