ALTER TABLE projects DROP COLUMN network, DROP COLUMN setup_command;

-- Postgres cannot drop a value from an enum: the types are made again without it, and what
-- used it becomes what it was before the sandbox (an ordinary block, a failed run).
UPDATE beads SET blocked_reason = 'manual' WHERE blocked_reason = 'sandbox_unavailable';
UPDATE runs SET outcome = 'failed' WHERE outcome = 'sandbox_unavailable';

ALTER TYPE blocked_reason RENAME TO blocked_reason_with_sandbox;
CREATE TYPE blocked_reason AS ENUM (
    'needs_human', 'loop_detected', 'too_many_attempts',
    'gateway_unavailable', 'merge_conflict', 'manual'
);
ALTER TABLE beads ALTER COLUMN blocked_reason TYPE blocked_reason
    USING blocked_reason::text::blocked_reason;
DROP TYPE blocked_reason_with_sandbox;

ALTER TYPE run_outcome RENAME TO run_outcome_with_sandbox;
CREATE TYPE run_outcome AS ENUM (
    'success', 'failed', 'lease_expired', 'invalid_replies', 'loop_detected',
    'turn_limit', 'token_budget', 'gateway_unavailable', 'needs_human',
    'merge_conflict', 'cancelled'
);
ALTER TABLE runs ALTER COLUMN outcome TYPE run_outcome USING outcome::text::run_outcome;
DROP TYPE run_outcome_with_sandbox;
