package cluster

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// TLSFiles are a node's PEM files for the internal listener and its client:
// the cluster CA's certificate(s), the node's certificate and its key
// ([cluster] tls_ca, tls_cert, tls_key).
type TLSFiles struct {
	CA, Cert, Key string
}

// ServerTLS is the internal listener's config: it presents the node's
// certificate and accepts only clients with a certificate signed by the
// cluster CA (a node that cannot prove it is a member gets nothing), over
// TLS 1.3 only.
func ServerTLS(f TLSFiles) (*tls.Config, error) {
	pool, cert, err := f.load()
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
	}, nil
}

// ClientTLS is the config for calling another node's internal listener: it
// trusts only the cluster CA and presents the node's certificate, over TLS
// 1.3 only. ServerName is left empty: tls.Dial takes it from the address
// (the peer's advertise URL host, which must be among its certificate's
// SANs); a caller dialling an IP may set it to the peer's node name instead.
func ClientTLS(f TLSFiles) (*tls.Config, error) {
	pool, cert, err := f.load()
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
	}, nil
}

// PeerNode is the node name (the certificate's common name) of the verified
// peer of a completed handshake, or "" if there is none.
func PeerNode(cs tls.ConnectionState) string {
	if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return ""
	}
	return cs.VerifiedChains[0][0].Subject.CommonName
}

func (f TLSFiles) load() (*x509.CertPool, tls.Certificate, error) {
	if f.CA == "" || f.Cert == "" || f.Key == "" {
		return nil, tls.Certificate{}, errors.New("cluster tls: tls_ca, tls_cert and tls_key are all required")
	}
	caPEM, err := os.ReadFile(f.CA)
	if err != nil {
		return nil, tls.Certificate{}, fmt.Errorf("cluster tls: CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, tls.Certificate{}, fmt.Errorf("cluster tls: CA %s: no PEM certificate in it", f.CA)
	}
	// The key's contents never reach an error: LoadX509KeyPair's errors name
	// the problem, not the bytes.
	cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return nil, tls.Certificate{}, fmt.Errorf("cluster tls: certificate %s, key %s: %w", f.Cert, f.Key, err)
	}
	// A node certificate from another CA would be refused by every peer; say
	// so at startup rather than in every handshake.
	// It serves and calls, so it needs both uses.
	for _, use := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := cert.Leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{use}}); err != nil {
			return nil, tls.Certificate{}, fmt.Errorf("cluster tls: certificate %s is not valid under CA %s: %w", f.Cert, f.CA, err)
		}
	}
	return pool, cert, nil
}
