-- Account generations and device tokens (docs/SEXMAP.md, "Sessions and the
-- account's generation" and "Device tokens").
--
-- account_id names one generation of an account's row: a random value drawn
-- when the row is inserted and drawn again whenever its state changes
-- (disabled, re-enabled, activated by signup). A row deleted and inserted
-- again (user del, a new invite, a new owner's signup) gets a new one.
-- A SeXMAP session remembers the account_id and login key it logged in
-- with and ends as soon as either differs.
ALTER TABLE users ADD COLUMN account_id BLOB;
UPDATE users SET account_id = randomblob(16);

CREATE TRIGGER users_account_id_insert AFTER INSERT ON users
WHEN NEW.account_id IS NULL BEGIN
    UPDATE users SET account_id = randomblob(16) WHERE address = NEW.address;
END;

CREATE TRIGGER users_account_id_state AFTER UPDATE OF state ON users
WHEN NEW.state IS NOT OLD.state BEGIN
    UPDATE users SET account_id = randomblob(16) WHERE address = NEW.address;
END;

-- Device tokens let a client that has logged in before pass the address
-- lock-out (never the IP one). Only their SHA-256 is kept, tied to one
-- account generation: a token of a deleted, disabled or re-created account
-- is gone with it.
CREATE TABLE device_tokens (
    id         INTEGER PRIMARY KEY,
    account_id BLOB NOT NULL,
    token_hash BLOB NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    created    INTEGER NOT NULL                -- unix seconds
) STRICT;

CREATE INDEX device_tokens_account ON device_tokens (account_id, id);
CREATE INDEX users_account_id ON users (account_id);

CREATE TRIGGER users_device_tokens_delete AFTER DELETE ON users BEGIN
    DELETE FROM device_tokens WHERE account_id = OLD.account_id;
END;

CREATE TRIGGER users_device_tokens_regenerate AFTER UPDATE OF account_id ON users
WHEN NEW.account_id IS NOT OLD.account_id BEGIN
    DELETE FROM device_tokens WHERE account_id = OLD.account_id;
END;
