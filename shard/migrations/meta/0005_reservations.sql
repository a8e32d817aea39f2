-- Reservations and invite claims (shard/directory.go): the cross-process
-- rules of creating, deleting and signing up no longer hold meta.db's write
-- lock while shard files are made or removed.
--
-- A reservation holds an address, with no users row, while its shard is
-- created (or removed, after the row's deletion). It ends when the creator
-- commits (the row is inserted and the reservation deleted in one
-- transaction) or cancels, or at expires: then the next creator takes it
-- over and removes what the crashed one left.
CREATE TABLE reservations (
    address TEXT PRIMARY KEY NOT NULL,
    home_id TEXT NOT NULL,
    token   BLOB NOT NULL CHECK (length(token) = 16),
    expires INTEGER NOT NULL               -- unix nanoseconds
) STRICT;

-- A sign-up claims its invite first (claim_token, until claim_expires, unix
-- nanoseconds) and marks it used when its account is ready, in the
-- transaction that commits the account. An expired claim leaves the invite
-- unused.
ALTER TABLE invites ADD COLUMN claim_token BLOB;
ALTER TABLE invites ADD COLUMN claim_expires INTEGER;
