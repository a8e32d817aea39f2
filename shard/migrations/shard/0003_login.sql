-- Login material: what the user logs in with. Everything here is public or
-- sealed by the client: the X25519 public login key, the Argon2id salt and
-- cost parameters, and the private OpenPGP key sealed under a key derived
-- from the passphrase, which the server never sees. No row: the user was
-- created by an administrator and has not signed up yet.

CREATE TABLE login (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    login_key   BLOB NOT NULL CHECK (length(login_key) = 32),
    salt        BLOB NOT NULL CHECK (length(salt) BETWEEN 16 AND 64),
    kdf_time    INTEGER NOT NULL CHECK (kdf_time BETWEEN 1 AND 4294967295),
    kdf_memory  INTEGER NOT NULL CHECK (kdf_memory BETWEEN 1 AND 4294967295), -- KiB
    kdf_threads INTEGER NOT NULL CHECK (kdf_threads BETWEEN 1 AND 255),
    sealed_key  BLOB NOT NULL CHECK (length(sealed_key) > 0),
    updated     INTEGER NOT NULL                 -- unix seconds
) STRICT;
