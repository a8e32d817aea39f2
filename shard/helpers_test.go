package shard_test

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"

	"cryptomail/shard"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

type env struct {
	dataDir string
	homes   []string
}

func newEnv(t testing.TB, nHomes int) env {
	t.Helper()
	root := t.TempDir()
	e := env{dataDir: filepath.Join(root, "data")}
	for i := range nHomes {
		e.homes = append(e.homes, filepath.Join(root, fmt.Sprintf("home%d", i)))
	}
	return e
}

func (e env) open(t testing.TB, mod ...func(*shard.Options)) *shard.Store {
	t.Helper()
	opts := shard.Options{DataDir: e.dataDir, Homes: e.homes, Logger: quiet}
	for _, m := range mod {
		m(&opts)
	}
	s, err := shard.Open(context.Background(), opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func mustCreate(t testing.TB, s *shard.Store, address string) shard.User {
	t.Helper()
	u, err := s.CreateUser(context.Background(), address, []byte("-----BEGIN PGP PUBLIC KEY BLOCK-----\nkey of "+address+"\n"))
	if err != nil {
		t.Fatalf("CreateUser(%s): %v", address, err)
	}
	return u
}

func msg(i int) shard.NewMessage {
	return shard.NewMessage{
		Received: time.Unix(1700000000, int64(i)),
		Size:     int64(100 + i),
		Summary:  []byte(fmt.Sprintf("summary-%d", i)),
		Body:     []byte(fmt.Sprintf("body-%d", i)),
	}
}

// rawDB opens a file with a plain driver connection, as another program would.
func rawDB(t testing.TB, path string, params string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=rw"+params)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func userVersion(t testing.TB, path string) int {
	t.Helper()
	db := rawDB(t, path, "")
	var v int
	if err := db.QueryRow("PRAGMA user_version").Scan(&v); err != nil {
		t.Fatal(err)
	}
	db.Close()
	return v
}

func countMigrations(t testing.TB, dir string) int {
	t.Helper()
	m, err := filepath.Glob(filepath.Join("migrations", dir, "*.sql"))
	if err != nil {
		t.Fatal(err)
	}
	return len(m)
}
