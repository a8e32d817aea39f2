-- Message bodies move to a table of their own, shared by the messages that
-- have them: a copy within the shard adds a row, not the ciphertext again
-- (issue 9, item 5). A body lives while a message refers to it; the delete
-- trigger frees it with the last one (secure_delete zeroes its pages).
-- Nothing here depends on the columns other migrations add to messages.

CREATE TABLE bodies (
    id   INTEGER PRIMARY KEY,                     -- internal, never shown
    data BLOB NOT NULL                            -- ciphertext
) STRICT;

-- ALTER TABLE cannot add a NOT NULL column with a reference; the triggers
-- below refuse a message without a body and a body_id that changes.
ALTER TABLE messages ADD COLUMN body_id INTEGER REFERENCES bodies (id);

-- Existing messages keep their bodies, one each, numbered as the message.
INSERT INTO bodies (id, data) SELECT id, body FROM messages;
UPDATE messages SET body_id = id;

-- The usage triggers name messages.body: replace them before dropping it.
DROP TRIGGER messages_used_insert;
DROP TRIGGER messages_used_delete;
ALTER TABLE messages DROP COLUMN body;

CREATE INDEX messages_body ON messages (body_id);

CREATE TRIGGER messages_body_required BEFORE INSERT ON messages
    WHEN NEW.body_id IS NULL OR NOT EXISTS (SELECT 1 FROM bodies WHERE id = NEW.body_id) BEGIN
    SELECT RAISE(ABORT, 'message without a body');
END;

CREATE TRIGGER messages_body_fixed BEFORE UPDATE OF body_id ON messages
    WHEN NEW.body_id IS NOT OLD.body_id BEGIN
    SELECT RAISE(ABORT, 'a message body is never replaced');
END;

-- The last message referring to a body takes the body with it.
CREATE TRIGGER messages_body_free AFTER DELETE ON messages
    WHEN NOT EXISTS (SELECT 1 FROM messages WHERE body_id = OLD.body_id) BEGIN
    DELETE FROM bodies WHERE id = OLD.body_id;
END;

-- Stored bytes (state.used) count what is on disk: each message's summary,
-- and each body once however many messages share it.
CREATE TRIGGER messages_used_insert AFTER INSERT ON messages BEGIN
    UPDATE state SET used = used + length(NEW.summary) WHERE id = 1;
END;

CREATE TRIGGER messages_used_delete AFTER DELETE ON messages BEGIN
    UPDATE state SET used = used - length(OLD.summary) WHERE id = 1;
END;

CREATE TRIGGER bodies_used_insert AFTER INSERT ON bodies BEGIN
    UPDATE state SET used = used + length(NEW.data) WHERE id = 1;
END;

CREATE TRIGGER bodies_used_delete AFTER DELETE ON bodies BEGIN
    UPDATE state SET used = used - length(OLD.data) WHERE id = 1;
END;
