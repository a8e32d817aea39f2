package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"cryptomail/server"
	"cryptomail/server/cluster"
)

func TestCLIClusterCerts(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	r := runCLI("cluster", "certs", "-out", dir, "--days", "10", "n1", "n2", "--san", "127.0.0.1")
	if r.code != 0 {
		t.Fatalf("cluster certs: %+v", r)
	}
	for _, f := range []string{cluster.CACertFile, cluster.CAKeyFile, "n1.pem", "n1.key", "n2.pem", "n2.key"} {
		if !strings.Contains(r.stdout, filepath.Join(dir, f)) {
			t.Errorf("stdout does not name %s: %q", f, r.stdout)
		}
	}
	ca, _ := os.ReadFile(filepath.Join(dir, cluster.CACertFile))
	r = runCLI("cluster", "certs", "-out", dir, "n3")
	if r.code != 0 || !strings.Contains(r.stdout, "used the existing CA") {
		t.Fatalf("second run: %+v", r)
	}
	if ca2, _ := os.ReadFile(filepath.Join(dir, cluster.CACertFile)); !bytes.Equal(ca, ca2) {
		t.Error("CA rewritten")
	}
	// The files make a working TLS config for the node.
	if _, err := cluster.ServerTLS(cluster.TLSFiles{CA: filepath.Join(dir, cluster.CACertFile), Cert: filepath.Join(dir, "n3.pem"), Key: filepath.Join(dir, "n3.key")}); err != nil {
		t.Error(err)
	}
	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"cluster"}, 2, "want certs"},
		{[]string{"cluster", "certs", "n1"}, 2, "-out DIR is required"},
		{[]string{"cluster", "certs", "-out", dir}, 2, "at least one NODE"},
		{[]string{"cluster", "certs", "-out", dir, "--days", "0", "n9"}, 2, "at least 1"},
		{[]string{"cluster", "certs", "-out", dir, "n1"}, 1, "already exists"},
		{[]string{"cluster", "certs", "-out", dir, "Node_1"}, 1, "DNS label"},
	} {
		r := runCLI(tt.args...)
		if r.code != tt.code || !strings.Contains(r.stderr, tt.want) {
			t.Errorf("%q: %+v, want exit %d and %q", tt.args, r, tt.code, tt.want)
		}
	}
}

// serve, init and the admin commands refuse a config with [cluster] etcd
// set, and create nothing.
func TestCLIClusterRefused(t *testing.T) {
	dir := t.TempDir()
	p := writeBareConfig(t, dir, "127.0.0.1:0")
	conf, _ := os.ReadFile(p)
	conf = append(conf, []byte("[cluster]\netcd = [\"127.0.0.1:2379\"]\nnode = \"n1\"\nlisten = \"127.0.0.1:0\"\n"+
		"advertise = \"https://n1.internal:7443\"\ntls_cert = \"n1.pem\"\ntls_key = \"n1.key\"\ntls_ca = \"cluster-ca.pem\"\n")...)
	if err := os.WriteFile(p, conf, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"serve"}, {"init"}} {
		r := runCLI(append(args, "-config", p)...)
		if r.code != 1 || !strings.Contains(r.stderr, "clustering is not available in this version yet") || !strings.Contains(r.stderr, p) {
			t.Errorf("%s: %+v", args[0], r)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "data")); !os.IsNotExist(err) {
		t.Errorf("data dir created: %v", err)
	}
	// It is a valid config: the refusal is at run time, not in validation.
	cfg, err := server.LoadConfig(p)
	if err != nil || !cfg.Cluster.Enabled() {
		t.Fatalf("LoadConfig: %v", err)
	}
}
