-- MetaBase: maps each user to the home that holds the user's shard.
-- Nothing a user would call mail lives here.

CREATE TABLE users (
    address TEXT PRIMARY KEY NOT NULL,      -- canonical address, as given by the caller
    home    TEXT NOT NULL,                  -- absolute home directory, as configured
    state   TEXT NOT NULL DEFAULT 'active'
            CHECK (state IN ('active', 'invited', 'disabled')),
    created INTEGER NOT NULL                -- unix seconds
) STRICT;

-- homes keeps the number of users per home, maintained by the triggers below,
-- so placing a new user costs one small read instead of a scan of users.
CREATE TABLE homes (
    path  TEXT PRIMARY KEY NOT NULL,
    users INTEGER NOT NULL DEFAULT 0 CHECK (users >= 0)
) STRICT;

CREATE TRIGGER users_home_insert AFTER INSERT ON users BEGIN
    INSERT INTO homes (path, users) VALUES (NEW.home, 1)
        ON CONFLICT (path) DO UPDATE SET users = users + 1;
END;

CREATE TRIGGER users_home_delete AFTER DELETE ON users BEGIN
    UPDATE homes SET users = users - 1 WHERE path = OLD.home;
END;

CREATE TRIGGER users_home_update AFTER UPDATE OF home ON users
WHEN NEW.home IS NOT OLD.home BEGIN
    UPDATE homes SET users = users - 1 WHERE path = OLD.home;
    INSERT INTO homes (path, users) VALUES (NEW.home, 1)
        ON CONFLICT (path) DO UPDATE SET users = users + 1;
END;
