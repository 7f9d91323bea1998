DROP TABLE checks;
DROP INDEX beads_landing;
ALTER TABLE beads DROP COLUMN landing_sha, DROP COLUMN landing_since;
ALTER TABLE projects DROP COLUMN check_command, DROP COLUMN check_timeout_s, DROP COLUMN review,
    DROP COLUMN max_train, DROP COLUMN max_review_rounds;

-- Postgres cannot drop a value from an enum: `blocked_reason` is made again without
-- `check_unavailable` (such a block becomes an ordinary one). `bead_status` keeps `review` and
-- `landing` (making it again would mean rebuilding every index over a bead's status; the up
-- migration adds them only if missing): a bead in either goes back to open, its work still on
-- its branch.
UPDATE beads SET blocked_reason = 'manual' WHERE blocked_reason = 'check_unavailable';
UPDATE beads SET status = 'open' WHERE status::text IN ('review', 'landing');

ALTER TYPE blocked_reason RENAME TO blocked_reason_with_check;
CREATE TYPE blocked_reason AS ENUM (
    'needs_human', 'loop_detected', 'too_many_attempts',
    'gateway_unavailable', 'merge_conflict', 'manual', 'sandbox_unavailable'
);
ALTER TABLE beads ALTER COLUMN blocked_reason TYPE blocked_reason
    USING blocked_reason::text::blocked_reason;
DROP TYPE blocked_reason_with_check;
