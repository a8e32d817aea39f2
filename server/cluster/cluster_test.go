package cluster_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"cryptomail/server/cluster"
)

func files(dir, node string) cluster.TLSFiles {
	return cluster.TLSFiles{
		CA:   filepath.Join(dir, cluster.CACertFile),
		Cert: filepath.Join(dir, cluster.NodeCertFile(node)),
		Key:  filepath.Join(dir, cluster.NodeKeyFile(node)),
	}
}

func makeCerts(t *testing.T, dir string, nodes ...string) {
	t.Helper()
	if _, err := cluster.MakeCerts(dir, nodes, cluster.CertOptions{}); err != nil {
		t.Fatal(err)
	}
}

// handshake runs one connection from client to a listener with server, and
// reports the server's and the client's errors (the client's includes a
// read: in TLS 1.3 the client learns that its certificate was refused only
// then). peer is the client's node name as the server verified it.
func handshake(t *testing.T, server, client *tls.Config, serverName string) (serverErr, clientErr error, peer string) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", server)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		err  error
		peer string
	}
	done := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer c.Close()
		tc := c.(*tls.Conn)
		tc.SetDeadline(time.Now().Add(10 * time.Second))
		if err := tc.Handshake(); err != nil {
			done <- result{err: err}
			return
		}
		_, err = tc.Write([]byte("ok"))
		done <- result{err: err, peer: cluster.PeerNode(tc.ConnectionState())}
	}()
	cc := client.Clone()
	cc.ServerName = serverName
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", ln.Addr().String(), cc)
	if err == nil {
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 2)
		_, err = io.ReadFull(conn, buf)
		if err == nil && string(buf) != "ok" {
			err = errors.New("read " + string(buf))
		}
		conn.Close()
	}
	r := <-done
	return r.err, err, r.peer
}

func TestMutualTLSBothWays(t *testing.T) {
	dir := t.TempDir()
	makeCerts(t, dir, "n1", "n2")
	cfg := map[string][2]*tls.Config{}
	for _, n := range []string{"n1", "n2"} {
		s, err := cluster.ServerTLS(files(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		c, err := cluster.ClientTLS(files(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		if s.MinVersion != tls.VersionTLS13 || c.MinVersion != tls.VersionTLS13 || s.ClientAuth != tls.RequireAndVerifyClientCert {
			t.Fatalf("%s: min versions %x %x, client auth %v", n, s.MinVersion, c.MinVersion, s.ClientAuth)
		}
		cfg[n] = [2]*tls.Config{s, c}
	}
	for _, d := range [][2]string{{"n1", "n2"}, {"n2", "n1"}} {
		srv, cli := d[0], d[1]
		serr, cerr, peer := handshake(t, cfg[srv][0], cfg[cli][1], srv)
		if serr != nil || cerr != nil {
			t.Fatalf("%s serving %s: server %v, client %v", srv, cli, serr, cerr)
		}
		if peer != cli {
			t.Errorf("%s serving %s: peer node %q", srv, cli, peer)
		}
	}
	// The client checks the server's name: n2's certificate is not n1's.
	if _, cerr, _ := handshake(t, cfg["n2"][0], cfg["n1"][1], "n1"); cerr == nil {
		t.Error("client accepted n2's certificate as n1")
	}
}

func TestOtherCARefused(t *testing.T) {
	dirA, dirB := t.TempDir(), t.TempDir()
	makeCerts(t, dirA, "n1", "n2")
	makeCerts(t, dirB, "n2")
	srv, err := cluster.ServerTLS(files(dirA, "n1"))
	if err != nil {
		t.Fatal(err)
	}
	// A client with a certificate of another CA, even with a member's name.
	foreign, err := cluster.ClientTLS(files(dirB, "n2"))
	if err != nil {
		t.Fatal(err)
	}
	// It trusts cluster A's CA, so only the server side can refuse it.
	caA, _ := os.ReadFile(filepath.Join(dirA, cluster.CACertFile))
	foreign.RootCAs = x509.NewCertPool()
	foreign.RootCAs.AppendCertsFromPEM(caA)
	serr, cerr, _ := handshake(t, srv, foreign, "n1")
	if serr == nil || cerr == nil {
		t.Fatalf("certificate of another CA: server %v, client %v; want both refused", serr, cerr)
	}
	if !strings.Contains(serr.Error(), "certificate") {
		t.Errorf("server error %q does not mention the certificate", serr)
	}
	// And a client of cluster A refuses cluster B's server.
	srvB, err := cluster.ServerTLS(files(dirB, "n2"))
	if err != nil {
		t.Fatal(err)
	}
	cliA, _ := cluster.ClientTLS(files(dirA, "n1"))
	if _, cerr, _ := handshake(t, srvB, cliA, "n2"); cerr == nil {
		t.Error("client of cluster A accepted cluster B's server")
	}
	// Mixing files of two clusters is refused at load time.
	if _, err := cluster.ServerTLS(cluster.TLSFiles{CA: files(dirA, "n1").CA, Cert: files(dirB, "n2").Cert, Key: files(dirB, "n2").Key}); err == nil || !strings.Contains(err.Error(), "not valid under CA") {
		t.Errorf("node certificate of another CA loaded: %v", err)
	}
}

func TestClientWithoutCertificateRefused(t *testing.T) {
	dir := t.TempDir()
	makeCerts(t, dir, "n1")
	srv, err := cluster.ServerTLS(files(dir, "n1"))
	if err != nil {
		t.Fatal(err)
	}
	cli, err := cluster.ClientTLS(files(dir, "n1"))
	if err != nil {
		t.Fatal(err)
	}
	cli.Certificates = nil
	serr, cerr, _ := handshake(t, srv, cli, "n1")
	if serr == nil || cerr == nil {
		t.Fatalf("client without a certificate: server %v, client %v; want both refused", serr, cerr)
	}
}

func TestMakeCertsFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	res, err := cluster.MakeCerts(dir, []string{"n1"}, cluster.CertOptions{SANs: []string{"n1.internal", "10.0.0.1"}, NodeDays: 30})
	if err != nil {
		t.Fatal(err)
	}
	if res.CAReused || len(res.Written) != 4 {
		t.Errorf("result %+v", res)
	}
	for name, perm := range map[string]fs.FileMode{cluster.CACertFile: 0o644, cluster.CAKeyFile: 0o600, "n1.pem": 0o644, "n1.key": 0o600} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != perm {
			t.Errorf("%s: mode %v, want %v", name, fi.Mode().Perm(), perm)
		}
	}
	leaf := readCert(t, filepath.Join(dir, "n1.pem"))
	if leaf.Subject.CommonName != "n1" || !slices.Equal(leaf.DNSNames, []string{"n1", "n1.internal"}) ||
		len(leaf.IPAddresses) != 1 || !leaf.IPAddresses[0].Equal(net.ParseIP("10.0.0.1")) {
		t.Errorf("node certificate: CN %q, DNS %q, IPs %v", leaf.Subject.CommonName, leaf.DNSNames, leaf.IPAddresses)
	}
	if !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageServerAuth) || !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageClientAuth) || leaf.IsCA {
		t.Errorf("node certificate: ext key usage %v, CA %v", leaf.ExtKeyUsage, leaf.IsCA)
	}
	if d := leaf.NotAfter.Sub(leaf.NotBefore); d < 30*24*time.Hour || d > 31*24*time.Hour {
		t.Errorf("node certificate valid for %v, want 30 days", d)
	}
	ca := readCert(t, filepath.Join(dir, cluster.CACertFile))
	if !ca.IsCA || ca.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Errorf("CA: IsCA %v, key usage %v", ca.IsCA, ca.KeyUsage)
	}
	// The name given with --san is what a peer dialling the advertise URL checks.
	srv, _ := cluster.ServerTLS(files(dir, "n1"))
	cli, _ := cluster.ClientTLS(files(dir, "n1"))
	if serr, cerr, _ := handshake(t, srv, cli, "n1.internal"); serr != nil || cerr != nil {
		t.Errorf("server name from --san: server %v, client %v", serr, cerr)
	}
}

func TestMakeCertsReusesCA(t *testing.T) {
	dir := t.TempDir()
	makeCerts(t, dir, "n1")
	caPEM, _ := os.ReadFile(filepath.Join(dir, cluster.CACertFile))
	caKey, _ := os.ReadFile(filepath.Join(dir, cluster.CAKeyFile))
	n1, _ := os.ReadFile(filepath.Join(dir, "n1.pem"))

	res, err := cluster.MakeCerts(dir, []string{"n2"}, cluster.CertOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !res.CAReused || len(res.Written) != 2 {
		t.Errorf("second run: %+v", res)
	}
	caPEM2, _ := os.ReadFile(filepath.Join(dir, cluster.CACertFile))
	caKey2, _ := os.ReadFile(filepath.Join(dir, cluster.CAKeyFile))
	if !bytes.Equal(caPEM, caPEM2) || !bytes.Equal(caKey, caKey2) {
		t.Fatal("the CA was rewritten")
	}
	// n2, issued by the reused CA, talks to n1.
	s, err := cluster.ServerTLS(files(dir, "n1"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := cluster.ClientTLS(files(dir, "n2"))
	if err != nil {
		t.Fatal(err)
	}
	if serr, cerr, _ := handshake(t, s, c, "n1"); serr != nil || cerr != nil {
		t.Fatalf("n2 from the reused CA: server %v, client %v", serr, cerr)
	}

	// An existing node is refused, and nothing is written for the others.
	_, err = cluster.MakeCerts(dir, []string{"n3", "n1"}, cluster.CertOptions{})
	if err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("existing node: %v", err)
	}
	if n1b, _ := os.ReadFile(filepath.Join(dir, "n1.pem")); !bytes.Equal(n1, n1b) {
		t.Error("n1.pem rewritten")
	}
	if _, err := os.Stat(filepath.Join(dir, "n3.key")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("n3.key written although the run failed: %v", err)
	}

	// An expired CA issues nothing.
	if _, err := cluster.MakeCerts(dir, []string{"n5"}, cluster.CertOptions{Now: time.Now().AddDate(11, 0, 0)}); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("expired CA: %v", err)
	}
	// Half a CA is an error, never replaced.
	os.Remove(filepath.Join(dir, cluster.CACertFile))
	if _, err := cluster.MakeCerts(dir, []string{"n4"}, cluster.CertOptions{}); err == nil || !strings.Contains(err.Error(), "exists without") {
		t.Fatalf("CA key without certificate: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, cluster.CAKeyFile)); !bytes.Equal(b, caKey) {
		t.Error("CA key rewritten")
	}
}

func TestMakeCertsRefuses(t *testing.T) {
	for _, tt := range []struct {
		nodes []string
		o     cluster.CertOptions
		want  string
	}{
		{nil, cluster.CertOptions{}, "no node"},
		{[]string{"N1"}, cluster.CertOptions{}, "DNS label"},
		{[]string{"-n1"}, cluster.CertOptions{}, "DNS label"},
		{[]string{"n1.internal"}, cluster.CertOptions{}, "DNS label"},
		{[]string{"../x"}, cluster.CertOptions{}, "DNS label"},
		{[]string{"n1", "n1"}, cluster.CertOptions{}, "twice"},
		{[]string{"n1"}, cluster.CertOptions{SANs: []string{"bad name"}}, "--san"},
		{[]string{"n1"}, cluster.CertOptions{NodeDays: -1}, "at least one day"},
	} {
		dir := t.TempDir()
		_, err := cluster.MakeCerts(dir, tt.nodes, tt.o)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("MakeCerts(%q, %+v) = %v, want error containing %q", tt.nodes, tt.o, err, tt.want)
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Errorf("MakeCerts(%q): files written on error", tt.nodes)
		}
	}
}

func TestTLSFilesErrors(t *testing.T) {
	dir := t.TempDir()
	makeCerts(t, dir, "n1")
	f := files(dir, "n1")
	for _, tt := range []struct {
		f    cluster.TLSFiles
		want string
	}{
		{cluster.TLSFiles{}, "all required"},
		{cluster.TLSFiles{CA: filepath.Join(dir, "nope.pem"), Cert: f.Cert, Key: f.Key}, "no such file"},
		{cluster.TLSFiles{CA: f.Key, Cert: f.Cert, Key: f.Key}, "no PEM certificate"},
		{cluster.TLSFiles{CA: f.CA, Cert: f.Cert, Key: filepath.Join(dir, cluster.CAKeyFile)}, "n1.pem"},
	} {
		_, err := cluster.ServerTLS(tt.f)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ServerTLS(%+v) = %v, want %q", tt.f, err, tt.want)
		}
		if err != nil && strings.Contains(err.Error(), "PRIVATE KEY") {
			t.Errorf("error shows key material: %v", err)
		}
	}
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
