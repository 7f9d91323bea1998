-- Spend and work-in-progress limits. Per project: a token budget over the rolling window
-- (LOOM_SPEND_WINDOW_HOURS), the most beads in progress at once, and the most finished
-- beads waiting to merge (blocked as merge_conflict); null means no limit.
ALTER TABLE projects
    ADD COLUMN token_budget bigint CHECK (token_budget > 0),
    ADD COLUMN max_in_progress integer CHECK (max_in_progress > 0),
    ADD COLUMN max_awaiting_merge integer CHECK (max_awaiting_merge > 0);

-- A budget that is spent holds new claims back: one row per scope ('fleet', or a project),
-- written when the budget is reached and deleted when the window has moved past enough of
-- the spend; the row's insert and delete are what people are notified of.
CREATE TABLE spend_holds (
    scope text PRIMARY KEY,
    project_id text REFERENCES projects (id) ON DELETE CASCADE,
    spent bigint NOT NULL,
    budget bigint NOT NULL,
    since timestamptz NOT NULL DEFAULT now(),
    CHECK ((scope = 'fleet') = (project_id IS NULL))
);

-- The window's spend of a project: its runs' calls by time.
CREATE INDEX gateway_calls_created_run ON gateway_calls (created_at, run_id);
