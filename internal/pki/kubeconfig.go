package pki

import (
	"errors"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// KubeconfigName is the name of the cluster and of the context in every
// kubeconfig this package writes.
const KubeconfigName = "synod"

// Kubeconfig returns a kubeconfig (YAML) with one cluster and one context,
// both named "synod", current-context set, and a user entry named user
// holding the client certificate and key. All PEM data is embedded, so the
// file is self-contained and can be copied to another machine.
func Kubeconfig(serverURL string, caPEM, certPEM, keyPEM []byte, user string) ([]byte, error) {
	cfg, err := kubeconfig(serverURL, caPEM, certPEM, keyPEM, user)
	if err != nil {
		return nil, err
	}
	return clientcmd.Write(*cfg)
}

// WriteKubeconfig writes the kubeconfig that Kubeconfig returns to path
// (mode 0600 when created; parent directories are created as needed).
func WriteKubeconfig(path, serverURL string, caPEM, certPEM, keyPEM []byte, user string) error {
	cfg, err := kubeconfig(serverURL, caPEM, certPEM, keyPEM, user)
	if err != nil {
		return err
	}
	return clientcmd.WriteToFile(*cfg, path)
}

func kubeconfig(serverURL string, caPEM, certPEM, keyPEM []byte, user string) (*clientcmdapi.Config, error) {
	switch {
	case serverURL == "":
		return nil, errors.New("pki: kubeconfig needs a server URL")
	case user == "":
		return nil, errors.New("pki: kubeconfig needs a user name")
	case len(certPEM) == 0 || len(keyPEM) == 0:
		return nil, errors.New("pki: kubeconfig needs a client certificate and key")
	}
	cfg := clientcmdapi.NewConfig()
	cluster := clientcmdapi.NewCluster()
	cluster.Server = serverURL
	cluster.CertificateAuthorityData = caPEM
	cfg.Clusters[KubeconfigName] = cluster

	auth := clientcmdapi.NewAuthInfo()
	auth.ClientCertificateData = certPEM
	auth.ClientKeyData = keyPEM
	cfg.AuthInfos[user] = auth

	ctx := clientcmdapi.NewContext()
	ctx.Cluster = KubeconfigName
	ctx.AuthInfo = user
	cfg.Contexts[KubeconfigName] = ctx
	cfg.CurrentContext = KubeconfigName
	return cfg, nil
}
