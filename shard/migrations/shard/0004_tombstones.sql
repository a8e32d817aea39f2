-- Tombstones are kept for the newest destroyed objects only (tombstones.go).
-- pruned is the highest modseq whose tombstones may be gone: a delta sync
-- from a state below it cannot be answered and must start over.
ALTER TABLE state ADD COLUMN pruned INTEGER NOT NULL DEFAULT 0;
