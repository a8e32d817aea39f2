-- Reserved for 0005_summary_origin.sql (branch h-sig), written in parallel
-- with 0006. This placeholder only keeps the numbering contiguous on branch
-- h-store; the merge keeps h-sig's 0005 and deletes this file (two files
-- numbered 0005 make loadMigrations fail, so it cannot be forgotten).
SELECT 1;
