-- Who made each message's encrypted summary (XMAP's summary-by attribute):
-- 'server' sealed it from the message as it arrived (LMTP, SMTP, bounces, a
-- send without a summary), 'sender' is another user who wrote it through
-- send, 'owner' is the account's owner (append, the Sent copy of send). A
-- sender can write anything in a summary, so clients mark those unverified.
--
-- Rows stored before this migration get 'sender': nobody recorded who wrote
-- them, and the one mistake that must not happen is a sender's summary passing
-- as the server's. The cost is an "unverified" mark on older mail until it is
-- opened; a wrong 'server' could not be taken back.
ALTER TABLE messages ADD COLUMN summary_by TEXT NOT NULL DEFAULT 'sender'
    CHECK (summary_by IN ('server', 'sender', 'owner'));
