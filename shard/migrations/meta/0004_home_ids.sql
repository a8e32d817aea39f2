-- Homes are known by a stable id, never by their path (shard/homes.go): each
-- home directory holds a HOME file naming its id, and the metabase stores only
-- that id, so a data dir restored to another path (with storage.homes pointed
-- at it) keeps working and never reaches the old copy.
--
-- This step needs the path → id map of the homes the rows name, which only
-- the program can build (it reads, or writes, each directory's HOME file):
-- Open fills temp.home_id_map in the same transaction before this runs. A row
-- whose path has no entry would get a NULL id and fail the NOT NULL below, so
-- the migration cannot silently lose a user's home.

DROP TRIGGER users_home_insert;
DROP TRIGGER users_home_delete;
DROP TRIGGER users_home_update;

UPDATE users SET home = (SELECT m.id FROM temp.home_id_map m WHERE m.path = users.home);
ALTER TABLE users RENAME COLUMN home TO home_id;

-- The per-home user count, now keyed by id; a home is listed here from the
-- time it is first used (even with no users yet), which is how Open tells a
-- home this metabase knows from one copied from elsewhere.
DROP TABLE homes;
CREATE TABLE homes (
    id    TEXT PRIMARY KEY NOT NULL CHECK (length(id) = 32 AND id NOT GLOB '*[^0-9a-f]*'),
    users INTEGER NOT NULL DEFAULT 0 CHECK (users >= 0)
) STRICT;
INSERT INTO homes (id, users) SELECT home_id, count(*) FROM users GROUP BY home_id;
INSERT OR IGNORE INTO homes (id, users) SELECT id, 0 FROM temp.home_id_map;

CREATE INDEX users_home_id ON users (home_id);

CREATE TRIGGER users_home_insert AFTER INSERT ON users BEGIN
    INSERT INTO homes (id, users) VALUES (NEW.home_id, 1)
        ON CONFLICT (id) DO UPDATE SET users = users + 1;
END;

CREATE TRIGGER users_home_delete AFTER DELETE ON users BEGIN
    UPDATE homes SET users = users - 1 WHERE id = OLD.home_id;
END;

CREATE TRIGGER users_home_update AFTER UPDATE OF home_id ON users
WHEN NEW.home_id IS NOT OLD.home_id BEGIN
    UPDATE homes SET users = users - 1 WHERE id = OLD.home_id;
    INSERT INTO homes (id, users) VALUES (NEW.home_id, 1)
        ON CONFLICT (id) DO UPDATE SET users = users + 1;
END;

DROP TABLE temp.home_id_map;
