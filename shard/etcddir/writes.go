package etcddir

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"cryptomail/shard"
)

func (d *Dir) Reserve(ctx context.Context, address string, homes []string) (shard.Reservation, error) {
	if len(homes) == 0 {
		return shard.Reservation{}, fmt.Errorf("etcddir: %w: no home to reserve on", shard.ErrInvalid)
	}
	token, err := newToken()
	if err != nil {
		return shard.Reservation{}, err
	}
	var r shard.Reservation
	uk, rk := d.userKey(address), d.reservationKey(address)
	homesPrefix, resPrefix := d.homeKey(""), d.reservationKey("")
	_, err = d.update(ctx, "reserve", func(ctx context.Context) (change, error) {
		now := d.now()
		r = shard.Reservation{Address: address, Token: token, Expires: now.Add(d.ttl)}
		rd, err := d.read(ctx, "reserve", clientv3.OpGet(uk), clientv3.OpGet(rk),
			clientv3.OpGet(homesPrefix, clientv3.WithPrefix()), clientv3.OpGet(resPrefix, clientv3.WithPrefix()))
		if err != nil {
			return change{}, err
		}
		if rd.one(0) != nil {
			return change{}, fmt.Errorf("user %w", shard.ErrExists)
		}
		if kv := rd.one(1); kv != nil {
			var old reservationValue
			if err := decode(kv, &old); err != nil {
				return change{}, err
			}
			if old.Expires > now.UnixNano() {
				return change{}, shard.ErrReserved
			}
			r.TookOver = true
		}
		load := make(map[string]int64)
		for _, kv := range rd.all(2) {
			var h homeValue
			if err := decode(kv, &h); err != nil {
				return change{}, err
			}
			load[strings.TrimPrefix(string(kv.Key), homesPrefix)] = h.Users
		}
		for _, kv := range rd.all(3) {
			var v reservationValue
			if err := decode(kv, &v); err != nil {
				return change{}, err
			}
			if v.Expires > now.UnixNano() {
				load[v.Home]++
			}
		}
		best, bestN := "", int64(math.MaxInt64)
		for _, id := range homes {
			if n := load[id]; n < bestN {
				best, bestN = id, n
			}
		}
		r.HomeID = best
		return change{
			cmps: []clientv3.Cmp{
				same(uk, nil), same(rk, rd.one(1)),
				// The load placement saw is still the load.
				unchangedSince(homesPrefix, rd.rev), unchangedSince(resPrefix, rd.rev),
			},
			ops: []clientv3.Op{clientv3.OpPut(rk, mustJSON(reservationValue{Home: r.HomeID, Token: token, Expires: r.Expires.UnixNano()}))},
		}, nil
	})
	if err != nil {
		return shard.Reservation{}, err
	}
	return r, nil
}

// commitRead is what committing r needs read: its reservation, its entry
// (absent) and its home, as the three Gets from index i on.
func (d *Dir) commitGets(r shard.Reservation) []clientv3.Op {
	return []clientv3.Op{clientv3.OpGet(d.reservationKey(r.Address)), clientv3.OpGet(d.userKey(r.Address)), clientv3.OpGet(d.homeKey(r.HomeID))}
}

// commitChange turns r into an entry, if r (its token) is still held: rd
// holds commitGets from index i on.
func (d *Dir) commitChange(r shard.Reservation, rd reading, i int, now time.Time) (change, shard.Entry, error) {
	rk, uk, hk := d.reservationKey(r.Address), d.userKey(r.Address), d.homeKey(r.HomeID)
	reskv, userkv, homekv := rd.one(i), rd.one(i+1), rd.one(i+2)
	if reskv == nil {
		return change{}, shard.Entry{}, shard.ErrLost
	}
	var res reservationValue
	if err := decode(reskv, &res); err != nil {
		return change{}, shard.Entry{}, err
	}
	if subtle.ConstantTimeCompare(res.Token, r.Token) != 1 || res.Home != r.HomeID {
		return change{}, shard.Entry{}, shard.ErrLost
	}
	if userkv != nil {
		// Reserve refuses an address with an entry: only a foreign writer
		// can have made one.
		return change{}, shard.Entry{}, fmt.Errorf("user %w", shard.ErrExists)
	}
	var h homeValue
	if homekv != nil {
		if err := decode(homekv, &h); err != nil {
			return change{}, shard.Entry{}, err
		}
	}
	account := make([]byte, shard.AccountIDSize)
	if _, err := rand.Read(account); err != nil {
		return change{}, shard.Entry{}, fmt.Errorf("etcddir: account id: %w", err)
	}
	v := entryValue{Home: r.HomeID, State: shard.StateActive, Account: account, Created: now.Unix()}
	h.Users++
	return change{
		cmps: []clientv3.Cmp{same(rk, reskv), same(uk, nil), same(hk, homekv)},
		ops: []clientv3.Op{
			clientv3.OpDelete(rk),
			clientv3.OpPut(uk, mustJSON(v)),
			clientv3.OpPut(hk, mustJSON(h)),
		},
	}, v.entry(r.Address), nil
}

func (d *Dir) Commit(ctx context.Context, r shard.Reservation) (shard.Entry, error) {
	var e shard.Entry
	rev, err := d.update(ctx, "commit", func(ctx context.Context) (change, error) {
		rd, err := d.read(ctx, "commit", d.commitGets(r)...)
		if err != nil {
			return change{}, err
		}
		var ch change
		ch, e, err = d.commitChange(r, rd, 0, d.now())
		return ch, err
	})
	if err != nil {
		return shard.Entry{}, err
	}
	d.caughtUp(ctx, rev)
	return e, nil
}

func (d *Dir) Cancel(ctx context.Context, r shard.Reservation) error {
	rk := d.reservationKey(r.Address)
	_, err := d.update(ctx, "cancel", func(ctx context.Context) (change, error) {
		rd, err := d.read(ctx, "cancel", clientv3.OpGet(rk))
		if err != nil || rd.one(0) == nil {
			return change{}, err
		}
		var res reservationValue
		if err := decode(rd.one(0), &res); err != nil {
			return change{}, err
		}
		if subtle.ConstantTimeCompare(res.Token, r.Token) != 1 {
			return change{}, nil // lost already: no error
		}
		return change{cmps: []clientv3.Cmp{same(rk, rd.one(0))}, ops: []clientv3.Op{clientv3.OpDelete(rk)}}, nil
	})
	return err
}

func (d *Dir) Delete(ctx context.Context, address string) (shard.Reservation, error) {
	token, err := newToken()
	if err != nil {
		return shard.Reservation{}, err
	}
	var r shard.Reservation
	uk, rk, tk := d.userKey(address), d.reservationKey(address), d.tokensKey(address)
	rev, err := d.update(ctx, "delete", func(ctx context.Context) (change, error) {
		r = shard.Reservation{Address: address, Token: token, Expires: d.now().Add(d.ttl)}
		rd, err := d.read(ctx, "delete", clientv3.OpGet(uk))
		if err != nil {
			return change{}, err
		}
		userkv := rd.one(0)
		if userkv == nil {
			return change{}, fmt.Errorf("user %w", shard.ErrNotFound)
		}
		var v entryValue
		if err := decode(userkv, &v); err != nil {
			return change{}, err
		}
		r.HomeID = v.Home
		hk := d.homeKey(v.Home)
		hd, err := d.read(ctx, "delete", clientv3.OpGet(hk))
		if err != nil {
			return change{}, err
		}
		var h homeValue
		if kv := hd.one(0); kv != nil {
			if err := decode(kv, &h); err != nil {
				return change{}, err
			}
		}
		h.Users = max(h.Users-1, 0)
		return change{
			// The entry read is still the entry (the home read after it is
			// compared too).
			cmps: []clientv3.Cmp{same(uk, userkv), same(hk, hd.one(0))},
			ops: []clientv3.Op{
				clientv3.OpDelete(uk),
				clientv3.OpDelete(tk),
				clientv3.OpPut(hk, mustJSON(h)),
				// Replaces any reservation: Reserve refuses an address
				// with an entry, so only an expired leftover can be there.
				clientv3.OpPut(rk, mustJSON(reservationValue{Home: r.HomeID, Token: token, Expires: r.Expires.UnixNano()})),
			},
		}, nil
	})
	if err != nil {
		return shard.Reservation{}, err
	}
	d.caughtUp(ctx, rev)
	return r, nil
}

func (d *Dir) CreateInvite(ctx context.Context, inv shard.Invite) error {
	ck := d.codeKey(inv.CodeHash)
	ik := d.invitesOf(inv.Address) + hex.EncodeToString(inv.CodeHash)
	_, err := d.update(ctx, "create invite", func(ctx context.Context) (change, error) {
		rd, err := d.read(ctx, "create invite", clientv3.OpGet(ck))
		if err != nil {
			return change{}, err
		}
		if rd.one(0) != nil {
			return change{}, fmt.Errorf("invite code: %w", shard.ErrExists)
		}
		v := inviteValue{Address: inv.Address, Created: inv.Created.Unix(), Expires: inv.Expires.Unix()}
		return change{
			cmps: []clientv3.Cmp{same(ck, nil)},
			ops:  []clientv3.Op{clientv3.OpPut(ck, inv.Address), clientv3.OpPut(ik, mustJSON(v))},
		}, nil
	})
	return err
}

// invite is one stored invite of an address.
type invite struct {
	kv *mvccpb.KeyValue
	v  inviteValue
}

// invitesOf decodes the invites of address in kvs (a Get of its prefix),
// skipping keys of other addresses that share the prefix.
func (d *Dir) decodeInvites(address string, kvs []*mvccpb.KeyValue) ([]invite, [][]byte, error) {
	prefix := d.invitesOf(address)
	var out []invite
	var hashes [][]byte
	for _, kv := range kvs {
		h, err := hex.DecodeString(strings.TrimPrefix(string(kv.Key), prefix))
		if err != nil || len(h) != shard.InviteHashSize {
			continue // an address with a "/" after this one's
		}
		var v inviteValue
		if err := decode(kv, &v); err != nil {
			return nil, nil, err
		}
		if v.Address != address {
			continue
		}
		out = append(out, invite{kv, v})
		hashes = append(hashes, h)
	}
	return out, hashes, nil
}

func (d *Dir) putInvite(inv invite) clientv3.Op {
	return clientv3.OpPut(string(inv.kv.Key), mustJSON(inv.v))
}

func (d *Dir) ClaimInvite(ctx context.Context, address string, codeHash []byte, now time.Time) (shard.InviteClaim, error) {
	token, err := newToken()
	if err != nil {
		return shard.InviteClaim{}, err
	}
	var c shard.InviteClaim
	_, err = d.update(ctx, "claim invite", func(ctx context.Context) (change, error) {
		at := d.now()
		c = shard.InviteClaim{Address: address, Token: token, Expires: at.Add(d.ttl)}
		rd, err := d.read(ctx, "claim invite", clientv3.OpGet(d.invitesOf(address), clientv3.WithPrefix()))
		if err != nil {
			return change{}, err
		}
		invs, hashes, err := d.decodeInvites(address, rd.all(0))
		if err != nil {
			return change{}, err
		}
		// Every invite of the address is compared, in constant time: no
		// early exit says how close a guess came.
		found := -1
		for i, h := range hashes {
			if subtle.ConstantTimeCompare(h, codeHash) == 1 {
				found = i
			}
		}
		if found < 0 {
			return change{}, shard.ErrInvalidInvite
		}
		inv := invs[found]
		switch {
		case inv.v.Used != 0:
			return change{}, shard.ErrInvalidInvite
		case inv.v.ClaimToken != nil && inv.v.ClaimExpires > at.UnixNano():
			// Another sign-up holds it: one of the two would fail anyway.
			return change{}, shard.ErrInvalidInvite
		case now.Unix() >= inv.v.Expires:
			return change{}, shard.ErrInviteExpired
		}
		inv.v.ClaimToken, inv.v.ClaimExpires = token, c.Expires.UnixNano()
		return change{cmps: []clientv3.Cmp{same(string(inv.kv.Key), inv.kv)}, ops: []clientv3.Op{d.putInvite(inv)}}, nil
	})
	if err != nil {
		return shard.InviteClaim{}, err
	}
	return c, nil
}

// claimed returns the unused invite of invs claimed with token, or false.
func claimed(invs []invite, token []byte) (invite, bool) {
	for _, inv := range invs {
		if inv.v.Used == 0 && inv.v.ClaimToken != nil && bytes.Equal(inv.v.ClaimToken, token) {
			return inv, true
		}
	}
	return invite{}, false
}

func (d *Dir) ReleaseInvite(ctx context.Context, c shard.InviteClaim) error {
	_, err := d.update(ctx, "release invite", func(ctx context.Context) (change, error) {
		rd, err := d.read(ctx, "release invite", clientv3.OpGet(d.invitesOf(c.Address), clientv3.WithPrefix()))
		if err != nil {
			return change{}, err
		}
		invs, _, err := d.decodeInvites(c.Address, rd.all(0))
		if err != nil {
			return change{}, err
		}
		inv, ok := claimed(invs, c.Token)
		if !ok {
			return change{}, nil
		}
		inv.v.ClaimToken, inv.v.ClaimExpires = nil, 0
		return change{cmps: []clientv3.Cmp{same(string(inv.kv.Key), inv.kv)}, ops: []clientv3.Op{d.putInvite(inv)}}, nil
	})
	return err
}

func (d *Dir) CompleteSignup(ctx context.Context, c shard.InviteClaim, r *shard.Reservation) (shard.Entry, error) {
	var e shard.Entry
	uk := d.userKey(c.Address)
	rev, err := d.update(ctx, "complete sign-up", func(ctx context.Context) (change, error) {
		now := d.now()
		ops := []clientv3.Op{clientv3.OpGet(d.invitesOf(c.Address), clientv3.WithPrefix())}
		if r != nil {
			ops = append(ops, d.commitGets(*r)...)
		} else {
			ops = append(ops, clientv3.OpGet(uk))
		}
		rd, err := d.read(ctx, "complete sign-up", ops...)
		if err != nil {
			return change{}, err
		}
		invs, _, err := d.decodeInvites(c.Address, rd.all(0))
		if err != nil {
			return change{}, err
		}
		inv, ok := claimed(invs, c.Token)
		if !ok {
			return change{}, fmt.Errorf("claim lost: %w", shard.ErrInvalidInvite)
		}
		inv.v.Used, inv.v.ClaimToken, inv.v.ClaimExpires = now.Unix(), nil, 0
		ch := change{cmps: []clientv3.Cmp{same(string(inv.kv.Key), inv.kv)}, ops: []clientv3.Op{d.putInvite(inv)}}
		if r != nil {
			var commit change
			commit, e, err = d.commitChange(*r, rd, 1, now)
			if err != nil {
				return change{}, err
			}
			ch.cmps = append(ch.cmps, commit.cmps...)
			ch.ops = append(ch.ops, commit.ops...)
			return ch, nil
		}
		userkv := rd.one(1)
		var v entryValue
		if userkv != nil {
			if err := decode(userkv, &v); err != nil {
				return change{}, err
			}
		}
		if userkv == nil || v.State != shard.StateActive {
			return change{}, fmt.Errorf("active user %w", shard.ErrNotFound)
		}
		e = v.entry(c.Address)
		ch.cmps = append(ch.cmps, same(uk, userkv))
		return ch, nil
	})
	if err != nil {
		return shard.Entry{}, err
	}
	if r != nil {
		d.caughtUp(ctx, rev)
	}
	return e, nil
}

func (d *Dir) AddDeviceToken(ctx context.Context, address string, hash []byte, max int, now time.Time) error {
	uk, tk := d.userKey(address), d.tokensKey(address)
	_, err := d.update(ctx, "add device token", func(ctx context.Context) (change, error) {
		rd, err := d.read(ctx, "add device token", clientv3.OpGet(uk), clientv3.OpGet(tk))
		if err != nil {
			return change{}, err
		}
		v, err := activeEntry(rd.one(0))
		if err != nil {
			return change{}, err
		}
		var t tokensValue
		if kv := rd.one(1); kv != nil {
			if err := decode(kv, &t); err != nil {
				return change{}, err
			}
		}
		if !bytes.Equal(t.Account, v.Account) {
			t = tokensValue{Account: v.Account} // a former account's tokens
		}
		t.Hashes = append(t.Hashes, hash)
		if max >= 0 && len(t.Hashes) > max {
			t.Hashes = t.Hashes[len(t.Hashes)-max:]
		}
		return change{
			cmps: []clientv3.Cmp{same(uk, rd.one(0)), same(tk, rd.one(1))},
			ops:  []clientv3.Op{clientv3.OpPut(tk, mustJSON(t))},
		}, nil
	})
	return err
}

// activeEntry decodes kv, an entry that must exist and be active.
func activeEntry(kv *mvccpb.KeyValue) (entryValue, error) {
	var v entryValue
	if kv == nil {
		return v, fmt.Errorf("user %w", shard.ErrNotFound)
	}
	if err := decode(kv, &v); err != nil {
		return v, err
	}
	if v.State != shard.StateActive {
		return v, fmt.Errorf("active user %w", shard.ErrNotFound)
	}
	return v, nil
}

func (d *Dir) HasDeviceToken(ctx context.Context, address string, hash []byte) (bool, error) {
	if d.isClosed() {
		return false, fmt.Errorf("etcddir: has device token: %w", shard.ErrClosed)
	}
	ctx, cancel := d.withTimeout(ctx)
	defer cancel()
	rd, err := d.read(ctx, "has device token", clientv3.OpGet(d.userKey(address)), clientv3.OpGet(d.tokensKey(address)))
	if err != nil {
		return false, err
	}
	v, err := activeEntry(rd.one(0))
	if errors.Is(err, shard.ErrNotFound) || err == nil && rd.one(1) == nil {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	var t tokensValue
	if err := decode(rd.one(1), &t); err != nil {
		return false, err
	}
	if !bytes.Equal(t.Account, v.Account) {
		return false, nil
	}
	found := 0
	for _, h := range t.Hashes {
		found |= subtle.ConstantTimeCompare(h, hash)
	}
	return found == 1, nil
}

func (d *Dir) ClearDeviceTokens(ctx context.Context, address string) error {
	tk := d.tokensKey(address)
	_, err := d.update(ctx, "clear device tokens", func(ctx context.Context) (change, error) {
		return change{ops: []clientv3.Op{clientv3.OpDelete(tk)}}, nil
	})
	return err
}
