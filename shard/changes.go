package shard

import (
	"context"
	"fmt"
)

// Kind is the kind of object a change is about.
type Kind string

const (
	KindFolder  Kind = "folder"
	KindMessage Kind = "message"
	KindContact Kind = "contact"
)

// ChangeType says how an object changed since the state asked about.
type ChangeType int

const (
	// Created: the object did not exist at that state (and may have
	// changed since).
	Created ChangeType = iota + 1
	// Updated: the object existed and changed (a message's flags or
	// folder, a folder's name, a contact's data), or existed before this
	// shard recorded creation stamps.
	Updated
	// Destroyed: the object existed at that state and is gone.
	Destroyed
)

// Change is one object that changed.
type Change struct {
	Kind Kind
	ID   int64
	Type ChangeType
}

// ChangeSet is a page of changes.
type ChangeSet struct {
	// ModSeq is the state the caller is in once it has applied Changes:
	// ask again since it while HasMore.
	ModSeq  int64
	HasMore bool
	Changes []Change // in modseq order
}

var kinds = [...]Kind{1: KindFolder, 2: KindMessage, 3: KindContact}

// Changes lists what changed since modseq since, at most max changes, from
// one snapshot. An object created and destroyed since then is not listed;
// one created and changed is listed once, as created.
//
// Every changed object carries a modseq of its own (doc.go), so a page ends
// exactly after the change of its last object: whatever changed later is in
// a later page, nothing is skipped. ErrUnknownState if since is negative,
// ahead of the shard's modseq, or older than the tombstones the shard keeps
// (tombstones.go).
func (s *Store) Changes(ctx context.Context, address string, since int64, max int) (ChangeSet, error) {
	if max < 1 {
		return ChangeSet{}, fmt.Errorf("shard: changes: %w: max %d", ErrInvalid, max)
	}
	var cs ChangeSet
	err := s.snapshot(ctx, address, "changes", func(ctx context.Context, db querier) error {
		var cur, pruned int64
		if err := db.QueryRowContext(ctx, `SELECT modseq, pruned FROM state WHERE id = 1`).Scan(&cur, &pruned); err != nil {
			return err
		}
		if since < 0 || since > cur {
			return fmt.Errorf("modseq %d, shard at %d: %w", since, cur, ErrUnknownState)
		}
		if since < pruned {
			// Tombstones up to pruned are gone (tombstones.go).
			return fmt.Errorf("modseq %d, tombstones kept from %d: %w", since, pruned, ErrUnknownState)
		}
		rows, err := db.QueryContext(ctx, `
			SELECT kind, id, modseq, created_modseq > ?1, gone FROM (
				SELECT 1 AS kind, id, modseq, created_modseq, 0 AS gone FROM folders WHERE modseq > ?1
				UNION ALL SELECT 2, id, modseq, created_modseq, 0 FROM messages WHERE modseq > ?1
				UNION ALL SELECT 3, id, modseq, created_modseq, 0 FROM contacts WHERE modseq > ?1
				UNION ALL SELECT 1, id, modseq, created_modseq, 1 FROM destroyed_folders WHERE modseq > ?1 AND created_modseq <= ?1
				UNION ALL SELECT 2, id, modseq, created_modseq, 1 FROM destroyed_messages WHERE modseq > ?1 AND created_modseq <= ?1
				UNION ALL SELECT 3, id, modseq, created_modseq, 1 FROM destroyed_contacts WHERE modseq > ?1 AND created_modseq <= ?1
			) ORDER BY modseq LIMIT ?2`, since, max+1)
		if err != nil {
			return err
		}
		defer rows.Close()
		var stamps []int64
		for rows.Next() {
			var kind int
			var c Change
			var modseq int64
			var created, gone bool
			if err := rows.Scan(&kind, &c.ID, &modseq, &created, &gone); err != nil {
				return err
			}
			if kind < 1 || kind >= len(kinds) {
				return fmt.Errorf("%w: change of kind %d", ErrCorrupt, kind)
			}
			c.Kind = kinds[kind]
			switch {
			case gone:
				c.Type = Destroyed
			case created:
				c.Type = Created
			default:
				c.Type = Updated
			}
			cs.Changes = append(cs.Changes, c)
			stamps = append(stamps, modseq)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		cs.ModSeq = cur
		if len(cs.Changes) <= max {
			return nil
		}
		// Cut after the max-th change. Should two objects ever share a
		// modseq (writes stamp each object apart, so they do not), the cut
		// moves back to the last boundary between modseqs, never through
		// one; a page that cannot be cut is left to a full resync.
		n := max
		for n > 0 && stamps[n-1] == stamps[n] {
			n--
		}
		if n == 0 {
			return fmt.Errorf("%d changes share modseq %d: %w", max+1, stamps[0], ErrUnknownState)
		}
		cs.Changes, cs.ModSeq, cs.HasMore = cs.Changes[:n], stamps[n-1], true
		return nil
	})
	if err != nil {
		return ChangeSet{}, err
	}
	return cs, nil
}
