-- Mail access (XMAP): one modseq per changed object, creation stamps for
-- delta sync, folder counts, a stored-bytes counter for quotas, the page
-- index, and contacts.

-- created_modseq is the modseq at which an object was created, so a delta
-- sync can tell "created since N" from "updated since N". Objects older than
-- this migration get 0: reported as updated, never wrongly as created, which
-- a client handles either way (XMAP: an unknown updated id is fetched as new).
ALTER TABLE folders ADD COLUMN created_modseq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN created_modseq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE destroyed_messages ADD COLUMN created_modseq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE destroyed_folders ADD COLUMN created_modseq INTEGER NOT NULL DEFAULT 0;

-- Every object now carries a modseq of its own (see doc.go). Deliveries used
-- to stamp the folder with the message's modseq; give each folder a fresh,
-- distinct one above everything so far.
UPDATE state SET modseq = modseq + (SELECT count(*) FROM folders) WHERE id = 1;
UPDATE folders SET modseq = (SELECT modseq FROM state WHERE id = 1)
    - (SELECT count(*) FROM folders AS f WHERE f.id > folders.id);

DROP TRIGGER messages_destroyed;
CREATE TRIGGER messages_destroyed AFTER DELETE ON messages BEGIN
    INSERT INTO destroyed_messages (id, folder_id, uid, modseq, created_modseq)
        VALUES (OLD.id, OLD.folder_id, OLD.uid, (SELECT modseq FROM state WHERE id = 1), OLD.created_modseq);
END;

DROP TRIGGER folders_destroyed;
CREATE TRIGGER folders_destroyed AFTER DELETE ON folders BEGIN
    INSERT INTO destroyed_folders (id, modseq, created_modseq)
        VALUES (OLD.id, (SELECT modseq FROM state WHERE id = 1), OLD.created_modseq);
END;

-- Listing order is (received second, id), as XMAP specifies; received_s is
-- floor(received / 1e9) without overflow for any stored value. The index
-- entries end with the rowid, so they are in exactly that order.
ALTER TABLE messages ADD COLUMN received_s INTEGER
    GENERATED ALWAYS AS (received / 1000000000 - (received % 1000000000 < 0)) VIRTUAL;
CREATE INDEX messages_folder_received ON messages (folder_id, received_s);

-- Folder counts, kept by triggers so no write path can forget them and
-- listing folders costs no scan.
ALTER TABLE folders ADD COLUMN total INTEGER NOT NULL DEFAULT 0;
ALTER TABLE folders ADD COLUMN unseen INTEGER NOT NULL DEFAULT 0;
UPDATE folders SET
    total = (SELECT count(*) FROM messages AS m WHERE m.folder_id = folders.id),
    unseen = (SELECT count(*) FROM messages AS m WHERE m.folder_id = folders.id
              AND instr(' ' || m.flags || ' ', ' \Seen ') = 0);

CREATE TRIGGER messages_count_insert AFTER INSERT ON messages BEGIN
    UPDATE folders SET total = total + 1,
        unseen = unseen + (instr(' ' || NEW.flags || ' ', ' \Seen ') = 0)
        WHERE id = NEW.folder_id;
END;

CREATE TRIGGER messages_count_delete AFTER DELETE ON messages BEGIN
    UPDATE folders SET total = total - 1,
        unseen = unseen - (instr(' ' || OLD.flags || ' ', ' \Seen ') = 0)
        WHERE id = OLD.folder_id;
END;

CREATE TRIGGER messages_count_update AFTER UPDATE OF folder_id, flags ON messages BEGIN
    UPDATE folders SET total = total - 1,
        unseen = unseen - (instr(' ' || OLD.flags || ' ', ' \Seen ') = 0)
        WHERE id = OLD.folder_id;
    UPDATE folders SET total = total + 1,
        unseen = unseen + (instr(' ' || NEW.flags || ' ', ' \Seen ') = 0)
        WHERE id = NEW.folder_id;
END;

-- Contacts: one encrypted blob each, opaque to the server.
CREATE TABLE contacts (
    id             INTEGER PRIMARY KEY AUTOINCREMENT, -- never reused
    data           BLOB NOT NULL,                     -- ciphertext
    created_modseq INTEGER NOT NULL,
    modseq         INTEGER NOT NULL
) STRICT;

CREATE INDEX contacts_modseq ON contacts (modseq);

CREATE TABLE destroyed_contacts (
    id             INTEGER PRIMARY KEY,               -- the contact's former id
    modseq         INTEGER NOT NULL,
    created_modseq INTEGER NOT NULL
) STRICT;

CREATE INDEX destroyed_contacts_modseq ON destroyed_contacts (modseq);

CREATE TRIGGER contacts_destroyed AFTER DELETE ON contacts BEGIN
    INSERT INTO destroyed_contacts (id, modseq, created_modseq)
        VALUES (OLD.id, (SELECT modseq FROM state WHERE id = 1), OLD.created_modseq);
END;

-- Bytes of stored ciphertext (message summaries and bodies, contacts), for
-- quotas; kept by triggers like the counts.
ALTER TABLE state ADD COLUMN used INTEGER NOT NULL DEFAULT 0;
UPDATE state SET used =
    (SELECT coalesce(sum(length(summary) + length(body)), 0) FROM messages) WHERE id = 1;

CREATE TRIGGER messages_used_insert AFTER INSERT ON messages BEGIN
    UPDATE state SET used = used + length(NEW.summary) + length(NEW.body) WHERE id = 1;
END;

CREATE TRIGGER messages_used_delete AFTER DELETE ON messages BEGIN
    UPDATE state SET used = used - length(OLD.summary) - length(OLD.body) WHERE id = 1;
END;

CREATE TRIGGER contacts_used_insert AFTER INSERT ON contacts BEGIN
    UPDATE state SET used = used + length(NEW.data) WHERE id = 1;
END;

CREATE TRIGGER contacts_used_update AFTER UPDATE OF data ON contacts BEGIN
    UPDATE state SET used = used - length(OLD.data) + length(NEW.data) WHERE id = 1;
END;

CREATE TRIGGER contacts_used_delete AFTER DELETE ON contacts BEGIN
    UPDATE state SET used = used - length(OLD.data) WHERE id = 1;
END;
