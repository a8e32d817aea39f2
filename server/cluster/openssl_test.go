package cluster_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"cryptomail/server/cluster"
)

// The openssl recipe in docs/CLUSTER.md makes files that ServerTLS and
// ClientTLS accept, and a CA that `cluster certs` can reuse.
func TestOpenSSLRecipe(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash not installed")
	}
	doc, err := os.ReadFile("../../docs/CLUSTER.md")
	if err != nil {
		t.Fatal(err)
	}
	_, sect, ok := strings.Cut(string(doc), "### With openssl")
	if !ok {
		t.Fatal("docs/CLUSTER.md has no openssl recipe")
	}
	_, code, ok := strings.Cut(sect, "```\n")
	if ok {
		code, _, ok = strings.Cut(code, "```")
	}
	if !ok {
		t.Fatal("the openssl recipe is not in a code block")
	}
	dir := t.TempDir()
	cmd := exec.Command("bash", "-e", "-c", code)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("recipe: %v\n%s", err, out)
	}
	if _, err := cluster.MakeCerts(dir, []string{"n2"}, cluster.CertOptions{}); err != nil {
		t.Fatalf("cluster certs with the openssl CA: %v", err)
	}
	s1, err := cluster.ServerTLS(files(dir, "n1"))
	if err != nil {
		t.Fatal(err)
	}
	c2, err := cluster.ClientTLS(files(dir, "n2"))
	if err != nil {
		t.Fatal(err)
	}
	if serr, cerr, peer := handshake(t, s1, c2, "n1.internal"); serr != nil || cerr != nil || peer != "n2" {
		t.Fatalf("openssl n1 serving n2: server %v, client %v, peer %q", serr, cerr, peer)
	}
	if fi, err := os.Stat(filepath.Join(dir, "n1.key")); err != nil {
		t.Error(err)
	} else if fi.Mode().Perm() != 0o600 {
		t.Errorf("n1.key: mode %v, want 0600", fi.Mode().Perm())
	}
}
