package xmapserver_test

import (
	"context"
	"testing"
	"time"

	"cryptomail/xmap/xmapserver"
	"cryptomail/xmap/xmapserver/memback"
	"cryptomail/xmap/xmapserver/xmaptest"
)

// TestConformance runs the shared folder, message, contact and sync checks against
// memback, the reference every storage backend is compared with.
func TestConformance(t *testing.T) {
	xmaptest.Run(t, func(t *testing.T, cfg xmaptest.Config) xmaptest.Fixture {
		w := newWorld(t, memback.Options{Quota: cfg.Quota, MaxFolders: cfg.MaxFolders})
		return membackFixture{w}
	})
}

type membackFixture struct{ w *world }

func (f membackFixture) Backend() xmapserver.Backend { return f.w.b }

func (f membackFixture) AddUser(ctx context.Context, address string) error {
	code := "invite-" + address
	f.w.b.AddInvite(code, address, f.w.clock.now().Add(time.Hour))
	return f.w.b.Signup(ctx, signupReq(code, address, []byte("key of "+address)))
}

func (f membackFixture) Deliver(ctx context.Context, address string, body, summary []byte, received time.Time) (string, error) {
	return f.w.b.Deliver(ctx, address, body, summary, received)
}
