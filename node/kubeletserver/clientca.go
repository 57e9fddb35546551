package kubeletserver

import (
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"k8s.io/client-go/rest"
)

// ClientCAsFromREST returns the cluster CA of a worker's kubeconfig (the CA
// that signed the apiservers' certificates, and so the apiserver's kubelet
// client certificate) as the pool Config.ClientCAs wants.
func ClientCAsFromREST(cfg *rest.Config) (*x509.CertPool, error) {
	data := cfg.TLSClientConfig.CAData
	if len(data) == 0 && cfg.TLSClientConfig.CAFile != "" {
		var err error
		if data, err = os.ReadFile(cfg.TLSClientConfig.CAFile); err != nil {
			return nil, fmt.Errorf("kubeletserver: cluster CA: %w", err)
		}
	}
	if len(data) == 0 {
		return nil, errors.New("kubeletserver: the kubeconfig has no certificate-authority: the kubelet server cannot verify the apiserver")
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, errors.New("kubeletserver: the kubeconfig's certificate-authority holds no PEM certificate")
	}
	return pool, nil
}
