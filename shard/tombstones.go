package shard

import (
	"context"
	"database/sql"
	"errors"
)

// Tombstones (destroyed_folders, destroyed_messages, destroyed_contacts) let
// Changes report what was destroyed since a state. Kept for ever they would
// grow with every expunge, so a shard keeps the newest MaxTombstones of them:
// a write that destroys objects and finds more than MaxTombstones +
// tombstoneSlack prunes the oldest down to MaxTombstones and records the
// highest pruned modseq in state.pruned. Changes since a modseq below that
// fails with ErrUnknownState (XMAP resync-required), so a client that stayed
// away for more than MaxTombstones deletions starts over instead of missing
// some. Changes since any later state stays exact: every tombstone above
// pruned is kept.

// MaxTombstones is how many tombstones a shard keeps at least.
const MaxTombstones = 10000

// tombstoneSlack lets pruning run once per this many destroyed objects
// rather than on every expunge of a shard at the limit.
const tombstoneSlack = 1000

// pruneKeep and pruneSlack are MaxTombstones and tombstoneSlack; tests lower
// them.
var pruneKeep, pruneSlack = MaxTombstones, tombstoneSlack

// pruneTombstones runs inside a write transaction that may have destroyed
// objects, keeping the newest keep tombstones once there are more than
// keep+slack.
func pruneTombstones(ctx context.Context, tx *sql.Tx, keep, slack int) error {
	var n int
	err := tx.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM destroyed_folders)
		+ (SELECT count(*) FROM destroyed_messages) + (SELECT count(*) FROM destroyed_contacts)`).Scan(&n)
	if err != nil || n <= keep+slack {
		return err
	}
	// The modseq of the newest tombstone to drop: everything up to it goes,
	// the keep newest stay (more, should several share that modseq).
	var cutoff int64
	err = tx.QueryRowContext(ctx, `SELECT modseq FROM (
			SELECT modseq FROM destroyed_folders
			UNION ALL SELECT modseq FROM destroyed_messages
			UNION ALL SELECT modseq FROM destroyed_contacts)
		ORDER BY modseq DESC LIMIT 1 OFFSET ?`, keep).Scan(&cutoff)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, q := range []string{
		`DELETE FROM destroyed_folders WHERE modseq <= ?`,
		`DELETE FROM destroyed_messages WHERE modseq <= ?`,
		`DELETE FROM destroyed_contacts WHERE modseq <= ?`,
		`UPDATE state SET pruned = max(pruned, ?) WHERE id = 1`,
	} {
		if _, err := tx.ExecContext(ctx, q, cutoff); err != nil {
			return err
		}
	}
	return nil
}
