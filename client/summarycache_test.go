package client_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"

	"cryptomail/client"
	"cryptomail/xmap"
	"cryptomail/xmap/sexmap"
)

// decrypted returns what decrypting each message's summary as the server stores it now
// gives, by id: what List must return, cached or not.
func decrypted(t *testing.T, s *client.Session, ids []string) map[string]*client.Summary {
	t.Helper()
	r, err := s.Fetch(context.Background(), &xmap.Fetch{IDs: ids, Parts: xmap.PartSummary})
	if err != nil || len(r.Messages) != len(ids) {
		t.Fatalf("fetch summaries: %+v %v", r, err)
	}
	out := map[string]*client.Summary{}
	for _, m := range r.Messages {
		sm, err := s.DecryptSummary(m.Summary)
		if err != nil {
			t.Fatalf("decrypt %s: %v", m.ID, err)
		}
		out[m.ID] = sm
	}
	return out
}

func checkPage(t *testing.T, what string, p *client.Page, want map[string]*client.Summary) {
	t.Helper()
	if len(p.Messages) != len(want) {
		t.Fatalf("%s: %d messages, want %d", what, len(p.Messages), len(want))
	}
	for _, m := range p.Messages {
		if m.SummaryErr != nil || !reflect.DeepEqual(m.Summary, want[m.ID]) {
			t.Errorf("%s: message %s: summary %+v (%v), want %+v", what, m.ID, m.Summary, m.SummaryErr, want[m.ID])
		}
	}
}

// List serves summaries it decrypted before from the session's cache: each must be
// exactly what decryption gives for that message, also after moves, copies and changes a
// caller makes to a page.
func TestListSummaryCache(t *testing.T) {
	for _, size := range []int{0, 2, -1} { // default, smaller than a page, off
		t.Run(fmt.Sprint("size=", size), func(t *testing.T) {
			e := newEnv(t)
			c, err := client.New(client.Options{Server: e.srv.URL, Home: t.TempDir(), KDFParams: sexmap.MinKDFParams, SummaryCacheSize: size})
			if err != nil {
				t.Fatal(err)
			}
			s := e.signup(c, "alice@example.org", "pass")
			var ids []string
			for i := range 4 {
				raw := fmt.Sprintf("From: Sender %d <s%d@remote.example>\r\nTo: alice@example.org\r\nSubject: message %d\r\n\r\nbody %d\r\n", i, i, i, i)
				id, err := e.srv.Deliver(e.ctx, "alice@example.org", []byte(raw))
				if err != nil {
					t.Fatal(err)
				}
				ids = append(ids, id)
			}
			want := decrypted(t, s, ids)
			for i, id := range ids {
				if sm := want[id]; sm.Subject != fmt.Sprint("message ", i) {
					t.Fatalf("message %s decrypts to %+v", id, sm)
				}
			}
			for round := range 3 {
				p, err := s.List(e.ctx, inbox, client.ListOptions{})
				if err != nil {
					t.Fatal(err)
				}
				checkPage(t, fmt.Sprint("round ", round), p, want)
				// A caller changing its page does not change the next one.
				for _, m := range p.Messages {
					m.Summary.Subject, m.Summary.To[0] = "changed", "changed"
				}
			}

			// A moved message keeps its id and summary; a copy has a new id.
			work, err := s.CreateFolder(e.ctx, "Work")
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Move(e.ctx, xmap.FolderRef{ID: work.ID}, ids[0]); err != nil {
				t.Fatal(err)
			}
			copies, err := s.Copy(e.ctx, xmap.FolderRef{ID: work.ID}, ids[1])
			if err != nil {
				t.Fatal(err)
			}
			wantWork := decrypted(t, s, []string{ids[0], copies[0].ID})
			if !reflect.DeepEqual(wantWork[copies[0].ID], want[ids[1]]) {
				t.Fatalf("copy decrypts to %+v, original to %+v", wantWork[copies[0].ID], want[ids[1]])
			}
			for round := range 2 {
				p, err := s.List(e.ctx, xmap.FolderRef{ID: work.ID}, client.ListOptions{})
				if err != nil {
					t.Fatal(err)
				}
				checkPage(t, fmt.Sprint("Work round ", round), p, wantWork)
			}
			delete(want, ids[0])
			p, err := s.List(e.ctx, inbox, client.ListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			checkPage(t, "INBOX after the move", p, want)

			// After logout nothing is served, from the cache or otherwise.
			if err := s.Logout(e.ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := s.List(e.ctx, inbox, client.ListOptions{}); !errors.Is(err, client.ErrSessionClosed) {
				t.Errorf("list after logout = %v", err)
			}
		})
	}
}
