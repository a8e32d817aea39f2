package client_test

import (
	"context"
	"testing"

	"cryptomail/client"
	"cryptomail/client/clienttest"
	"cryptomail/xmap/sexmap"
)

type env struct {
	t   *testing.T
	ctx context.Context
	srv *clienttest.Server
}

func newEnv(t *testing.T) *env {
	t.Helper()
	srv, err := clienttest.New(clienttest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return &env{t: t, ctx: t.Context(), srv: srv}
}

// client returns a client of the test server with its own home (or the given one).
func (e *env) client(home string) *client.Client {
	e.t.Helper()
	if home == "" {
		home = e.t.TempDir()
	}
	c, err := client.New(client.Options{Server: e.srv.URL, Home: home, KDFParams: sexmap.MinKDFParams})
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

func (e *env) invite(address string) string {
	e.t.Helper()
	code, err := e.srv.Invite(e.ctx, address)
	if err != nil {
		e.t.Fatal(err)
	}
	return code
}

// signup creates an account from c's home and returns a logged-in session.
func (e *env) signup(c *client.Client, address, passphrase string) *client.Session {
	e.t.Helper()
	if _, err := c.Signup(e.ctx, client.SignupParams{Invite: e.invite(address), Address: address, Passphrase: []byte(passphrase)}); err != nil {
		e.t.Fatalf("signup %s: %v", address, err)
	}
	return e.login(c, address, passphrase)
}

func (e *env) login(c *client.Client, address, passphrase string) *client.Session {
	e.t.Helper()
	s, err := c.Login(e.ctx, address, []byte(passphrase))
	if err != nil {
		e.t.Fatalf("login %s: %v", address, err)
	}
	e.t.Cleanup(func() { _ = s.Logout(context.Background()) })
	return s
}
