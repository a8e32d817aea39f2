-- Shard: one user's mail. Every blob is ciphertext made by the caller; the
-- storage layer never sees a readable message.

-- state is a single row holding the shard's highest modseq. Every write
-- transaction bumps it first and stamps what it changes with the new value.
CREATE TABLE state (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    modseq INTEGER NOT NULL CHECK (modseq >= 1)
) STRICT;
INSERT INTO state (id, modseq) VALUES (1, 1);

-- AUTOINCREMENT so an id is never reused: a destroyed id must stay destroyed
-- for delta sync.
CREATE TABLE folders (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL UNIQUE,
    role        TEXT UNIQUE CHECK (role IN ('inbox', 'sent', 'drafts', 'trash', 'junk')),
    uidnext     INTEGER NOT NULL DEFAULT 1 CHECK (uidnext BETWEEN 1 AND 4294967296),
    uidvalidity INTEGER NOT NULL CHECK (uidvalidity BETWEEN 1 AND 4294967295),
    created     INTEGER NOT NULL,           -- unix seconds
    modseq      INTEGER NOT NULL            -- last change to the folder or its uidnext
) STRICT;

INSERT INTO folders (name, role, uidvalidity, created, modseq) VALUES
    ('INBOX',  'inbox',  unixepoch(), unixepoch(), 1),
    ('Sent',   'sent',   unixepoch(), unixepoch(), 1),
    ('Drafts', 'drafts', unixepoch(), unixepoch(), 1),
    ('Trash',  'trash',  unixepoch(), unixepoch(), 1),
    ('Junk',   'junk',   unixepoch(), unixepoch(), 1);

CREATE TABLE messages (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,  -- global message id within the shard
    folder_id INTEGER NOT NULL REFERENCES folders (id),
    uid       INTEGER NOT NULL CHECK (uid BETWEEN 1 AND 4294967295),
    flags     TEXT NOT NULL DEFAULT '',           -- space-separated, e.g. '\Seen \Flagged'
    received  INTEGER NOT NULL,                   -- unix nanoseconds
    size      INTEGER NOT NULL CHECK (size >= 0), -- plaintext size as received
    modseq    INTEGER NOT NULL,
    summary   BLOB NOT NULL,                      -- ciphertext
    body      BLOB NOT NULL,                      -- ciphertext
    UNIQUE (folder_id, uid)
) STRICT;

CREATE INDEX messages_modseq ON messages (modseq);

-- Tombstones for delta sync ("what was destroyed since modseq N"). The
-- triggers stamp them with the modseq the deleting transaction has already
-- bumped, so no delete can forget its tombstone.
CREATE TABLE destroyed_messages (
    id        INTEGER PRIMARY KEY,                -- the message's former id
    folder_id INTEGER NOT NULL,
    uid       INTEGER NOT NULL,
    modseq    INTEGER NOT NULL
) STRICT;

CREATE INDEX destroyed_messages_modseq ON destroyed_messages (modseq);

CREATE TRIGGER messages_destroyed AFTER DELETE ON messages BEGIN
    INSERT INTO destroyed_messages (id, folder_id, uid, modseq)
        VALUES (OLD.id, OLD.folder_id, OLD.uid, (SELECT modseq FROM state WHERE id = 1));
END;

CREATE TABLE destroyed_folders (
    id     INTEGER PRIMARY KEY,                   -- the folder's former id
    modseq INTEGER NOT NULL
) STRICT;

CREATE INDEX destroyed_folders_modseq ON destroyed_folders (modseq);

CREATE TRIGGER folders_destroyed AFTER DELETE ON folders BEGIN
    INSERT INTO destroyed_folders (id, modseq)
        VALUES (OLD.id, (SELECT modseq FROM state WHERE id = 1));
END;

-- The user's public OpenPGP key (armored). One current key; replacing it
-- is a change like any other and bumps modseq.
CREATE TABLE keys (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    public_key BLOB NOT NULL,
    created    INTEGER NOT NULL                   -- unix seconds
) STRICT;
