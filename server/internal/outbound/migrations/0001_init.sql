-- The outbound queue: messages waiting for the relay (smarthost). A row lives
-- until every recipient is delivered or bounced, then it is deleted, body and
-- all (secure_delete zeroes the freed pages): a plaintext body the user
-- allowed exists here only until it is relayed.

CREATE TABLE queue (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    sender       TEXT NOT NULL,                -- envelope sender: the sending user's address
    body         BLOB NOT NULL,                -- the message exactly as it goes on the wire
    created      INTEGER NOT NULL,             -- unix nanoseconds; the queue lifetime counts from here
    next_attempt INTEGER NOT NULL,             -- unix nanoseconds
    attempts     INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    -- held: the send that queued it has not finished storing its local
    -- copies; the worker leaves it alone, and a held row found at start-up
    -- belongs to a send that never completed, so it is dropped.
    held         INTEGER NOT NULL DEFAULT 1 CHECK (held IN (0, 1)),
    last_error   TEXT NOT NULL DEFAULT ''      -- the relay's last reply, or a fixed description
) STRICT;

CREATE INDEX queue_due ON queue (held, next_attempt);

CREATE TABLE queue_rcpts (
    queue_id INTEGER NOT NULL REFERENCES queue (id) ON DELETE CASCADE,
    pos      INTEGER NOT NULL,                 -- order in the send request
    address  TEXT NOT NULL,
    -- pending: to be tried; sent: the relay took it; failed: permanently
    -- failed, bounce not yet stored; bounced: bounce stored in the sender's INBOX.
    status   TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed', 'bounced')),
    dsn_code TEXT NOT NULL DEFAULT '',         -- RFC 3463 status for the bounce, e.g. 5.1.1
    reply    TEXT NOT NULL DEFAULT '',         -- the relay's last reply for this recipient
    reason   TEXT NOT NULL DEFAULT '',         -- our own fixed words when the relay gave no reply
    PRIMARY KEY (queue_id, pos)
) STRICT;
