package cluster

import (
	"bytes"
	"crypto"
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
	"net"
	"os"
	"path/filepath"
	"time"

	"cryptomail/internal/atomicfile"
)

// The files MakeCerts writes in its directory.
const (
	CACertFile = "cluster-ca.pem"
	CAKeyFile  = "cluster-ca.key"
)

// NodeCertFile and NodeKeyFile name a node's files in MakeCerts' directory.
func NodeCertFile(node string) string { return node + ".pem" }
func NodeKeyFile(node string) string  { return node + ".key" }

// Default validity of MakeCerts' certificates.
const (
	DefaultCADays   = 3650
	DefaultNodeDays = 825
)

// organization is the subject O of every certificate MakeCerts makes.
const organization = "CryptoMail cluster"

// CheckNodeName reports whether name can be a node name: a DNS label, 1 to
// 63 lower-case letters, digits and hyphens, not starting or ending with a
// hyphen. It is also the node certificate's common name, a SAN and a file
// name.
func CheckNodeName(name string) error {
	if name == "" {
		return errors.New("node name is empty")
	}
	if len(name) > 63 {
		return fmt.Errorf("node name %q is longer than 63 characters", name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c == '-' && i > 0 && i < len(name)-1:
		default:
			return fmt.Errorf("node name %q is not a DNS label (lower-case letters, digits and inner hyphens)", name)
		}
	}
	return nil
}

// CertOptions are MakeCerts' settings; zero days take the defaults.
type CertOptions struct {
	CADays, NodeDays int
	// SANs are added to every node certificate, besides the node name: DNS
	// names, or IP addresses.
	SANs []string
	// Now is the time certificates start from (time.Now if zero).
	Now time.Time
}

// CertResult says what MakeCerts did.
type CertResult struct {
	CAReused bool     // the CA was already in the directory
	Written  []string // files written, in order
}

// MakeCerts makes, in dir, a cluster CA (unless dir has one, which is then
// used and never rewritten) and a certificate and key for each node, usable
// for both server and client authentication. Keys are ECDSA P-256 (PKCS #8),
// written 0600; certificates 0644; every file is written atomically and must
// not exist yet: a node's existing files are an error, and nothing is
// written for any node then.
func MakeCerts(dir string, nodes []string, o CertOptions) (CertResult, error) {
	var res CertResult
	if len(nodes) == 0 {
		return res, errors.New("cluster certs: no node name given")
	}
	if o.CADays == 0 {
		o.CADays = DefaultCADays
	}
	if o.NodeDays == 0 {
		o.NodeDays = DefaultNodeDays
	}
	if o.CADays < 1 || o.NodeDays < 1 {
		return res, fmt.Errorf("cluster certs: validity must be at least one day (CA %d, node %d)", o.CADays, o.NodeDays)
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	var dns []string
	var ips []net.IP
	for _, s := range o.SANs {
		if ip := net.ParseIP(s); ip != nil {
			ips = append(ips, ip)
			continue
		}
		if err := checkDNSName(s); err != nil {
			return res, fmt.Errorf("cluster certs: --san: %w", err)
		}
		dns = append(dns, s)
	}
	seen := map[string]bool{}
	for _, n := range nodes {
		if err := CheckNodeName(n); err != nil {
			return res, fmt.Errorf("cluster certs: %w", err)
		}
		if seen[n] {
			return res, fmt.Errorf("cluster certs: node %q named twice", n)
		}
		seen[n] = true
		for _, f := range []string{NodeCertFile(n), NodeKeyFile(n)} {
			if _, err := os.Lstat(filepath.Join(dir, f)); err == nil {
				return res, fmt.Errorf("cluster certs: %s already exists; remove %s and %s to issue node %q again", filepath.Join(dir, f), NodeCertFile(n), NodeKeyFile(n), n)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return res, fmt.Errorf("cluster certs: %w", err)
			}
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return res, fmt.Errorf("cluster certs: %w", err)
	}
	ca, caKey, reused, err := loadCA(dir)
	if err != nil {
		return res, err
	}
	if !reused {
		ca, caKey, err = newCA(dir, o, &res)
		if err != nil {
			return res, err
		}
	}
	res.CAReused = reused
	if !o.Now.Before(ca.NotAfter) {
		return res, fmt.Errorf("cluster certs: the CA in %s expired on %s; a new CA (remove %s and %s) means new certificates for every node", dir, ca.NotAfter.UTC().Format(time.DateOnly), CACertFile, CAKeyFile)
	}
	notAfter := o.Now.Add(time.Duration(o.NodeDays) * 24 * time.Hour)
	if notAfter.After(ca.NotAfter) {
		notAfter = ca.NotAfter
	}
	for _, n := range nodes {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return res, fmt.Errorf("cluster certs: node %s: key: %w", n, err)
		}
		serial, err := serialNumber()
		if err != nil {
			return res, err
		}
		tmpl := &x509.Certificate{
			SerialNumber: serial,
			Subject:      pkix.Name{CommonName: n, Organization: []string{organization}},
			NotBefore:    o.Now.Add(-time.Hour), // some clock skew between nodes
			NotAfter:     notAfter,
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
			DNSNames:     append([]string{n}, dns...),
			IPAddresses:  ips,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			return res, fmt.Errorf("cluster certs: node %s: %w", n, err)
		}
		// Key first: a certificate is never there without its key.
		if err := writeKey(filepath.Join(dir, NodeKeyFile(n)), key, &res); err != nil {
			return res, err
		}
		if err := writeCert(filepath.Join(dir, NodeCertFile(n)), der, &res); err != nil {
			return res, err
		}
	}
	return res, nil
}

// loadCA reads dir's CA, if there is one. One of its two files without the
// other is an error: a half-written CA is never replaced silently.
func loadCA(dir string) (*x509.Certificate, crypto.Signer, bool, error) {
	certPath, keyPath := filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile)
	certPEM, cerr := os.ReadFile(certPath)
	keyPEM, kerr := os.ReadFile(keyPath)
	switch {
	case errors.Is(cerr, fs.ErrNotExist) && errors.Is(kerr, fs.ErrNotExist):
		return nil, nil, false, nil
	case cerr != nil && !errors.Is(cerr, fs.ErrNotExist):
		return nil, nil, false, fmt.Errorf("cluster certs: CA: %w", cerr)
	case kerr != nil && !errors.Is(kerr, fs.ErrNotExist):
		return nil, nil, false, fmt.Errorf("cluster certs: CA key: %w", kerr)
	case cerr != nil:
		return nil, nil, false, fmt.Errorf("cluster certs: %s exists without %s; restore it, or remove both to make a new CA (every node certificate must then be issued again)", keyPath, certPath)
	case kerr != nil:
		return nil, nil, false, fmt.Errorf("cluster certs: %s exists without %s; certificates can only be issued with the CA's key", certPath, keyPath)
	}
	b, _ := pem.Decode(certPEM)
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, nil, false, fmt.Errorf("cluster certs: %s: no PEM certificate", certPath)
	}
	ca, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return nil, nil, false, fmt.Errorf("cluster certs: %s: %w", certPath, err)
	}
	if !ca.IsCA {
		return nil, nil, false, fmt.Errorf("cluster certs: %s is not a CA certificate", certPath)
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, nil, false, fmt.Errorf("cluster certs: %s: no PEM key", keyPath)
	}
	// The key's bytes never reach an error message.
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		if ek, err2 := x509.ParseECPrivateKey(kb.Bytes); err2 == nil {
			k = ek
		} else {
			return nil, nil, false, fmt.Errorf("cluster certs: %s: not a PKCS #8 or EC private key: %w", keyPath, err)
		}
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, nil, false, fmt.Errorf("cluster certs: %s: unsupported key type %T", keyPath, k)
	}
	pub, err := x509.MarshalPKIXPublicKey(signer.Public())
	if err != nil {
		return nil, nil, false, fmt.Errorf("cluster certs: %s: %w", keyPath, err)
	}
	if !bytes.Equal(pub, ca.RawSubjectPublicKeyInfo) {
		return nil, nil, false, fmt.Errorf("cluster certs: %s is not the key of %s", keyPath, certPath)
	}
	return ca, signer, true, nil
}

func newCA(dir string, o CertOptions, res *CertResult) (*x509.Certificate, crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster certs: CA key: %w", err)
	}
	serial, err := serialNumber()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: organization + " CA", Organization: []string{organization}},
		NotBefore:             o.Now.Add(-time.Hour),
		NotAfter:              o.Now.Add(time.Duration(o.CADays) * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster certs: CA: %w", err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster certs: CA: %w", err)
	}
	if err := writeKey(filepath.Join(dir, CAKeyFile), key, res); err != nil {
		return nil, nil, err
	}
	if err := writeCert(filepath.Join(dir, CACertFile), der, res); err != nil {
		return nil, nil, err
	}
	return ca, key, nil
}

func writeKey(path string, key *ecdsa.PrivateKey, res *CertResult) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("cluster certs: %s: %w", path, err)
	}
	return create(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600, res)
}

func writeCert(path string, der []byte, res *CertResult) error {
	return create(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644, res)
}

func create(path string, data []byte, perm fs.FileMode, res *CertResult) error {
	if err := atomicfile.Create(path, data, perm); err != nil {
		return fmt.Errorf("cluster certs: %w", err)
	}
	res.Written = append(res.Written, path)
	return nil
}

func serialNumber() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("cluster certs: serial number: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}

// checkDNSName accepts dot-separated labels of letters, digits and inner
// hyphens (a leading "*." wildcard is refused: a node is one host).
func checkDNSName(s string) error {
	if s == "" || len(s) > 253 {
		return fmt.Errorf("%q is not an IP address or a DNS name", s)
	}
	for _, l := range bytes.Split([]byte(s), []byte(".")) {
		if len(l) == 0 || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return fmt.Errorf("%q is not an IP address or a DNS name", s)
		}
		for _, c := range l {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Errorf("%q is not an IP address or a DNS name", s)
			}
		}
	}
	return nil
}
