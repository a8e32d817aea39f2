package shard

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"
)

// TestConnectionSettings checks what durability and safety rest on: every
// connection, writer and reader, runs with these settings.
func TestConnectionSettings(t *testing.T) {
	ctx := context.Background()
	file := filepath.Join(t.TempDir(), "x.db")
	if err := createFile(file); err != nil {
		t.Fatal(err)
	}
	want := []struct{ pragma, value string }{
		{"journal_mode", "wal"},
		{"synchronous", "2"}, // FULL
		{"foreign_keys", "1"},
		{"secure_delete", "1"},
		{"busy_timeout", "1234"},
		{"journal_size_limit", "4194304"},
	}
	for _, kind := range []dbKind{kindShard, kindMeta} {
		p := openPair(file, 1234*time.Millisecond, kind)
		for _, c := range []struct {
			name string
			db   *sql.DB
		}{{"writer", p.w}, {"reader", p.r}} {
			for _, w := range want {
				var got string
				if err := c.db.QueryRowContext(ctx, "PRAGMA "+w.pragma).Scan(&got); err != nil {
					t.Fatalf("kind %d %s: PRAGMA %s: %v", kind, c.name, w.pragma, err)
				}
				if got != w.value {
					t.Errorf("kind %d %s: %s = %s, want %s", kind, c.name, w.pragma, got, w.value)
				}
			}
		}
		if _, err := p.r.ExecContext(ctx, "CREATE TABLE t (x)"); err == nil {
			t.Errorf("kind %d: a reader connection could write", kind)
		}
		if err := p.close(); err != nil {
			t.Fatal(err)
		}
	}
}
