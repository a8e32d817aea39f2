-- Invites: one-time codes an administrator hands out for signing up. Only the
-- SHA-256 of a code is kept, so a copy of meta.db gives no usable code.

CREATE TABLE invites (
    id        INTEGER PRIMARY KEY,
    code_hash BLOB NOT NULL UNIQUE CHECK (length(code_hash) = 32),
    address   TEXT NOT NULL,                -- canonical address the code is for
    created   INTEGER NOT NULL,             -- unix seconds
    expires   INTEGER NOT NULL CHECK (expires > created),
    used      INTEGER                       -- unix seconds of the signup; NULL while unused
) STRICT;

-- Signup looks invites up by address and compares code hashes in constant
-- time, rather than searching the table by hash.
CREATE INDEX invites_address ON invites (address);
CREATE INDEX invites_expires ON invites (expires);
