-- Verified landing (issue 20): `done` is a claim. A finished bead waits in `review` (when
-- the project asks for one) and then in `landing`, where the project's merge queue merges
-- its commit onto the project branch's tip, runs the project's check on the merged tree in
-- the sandbox and pushes only on green. A check that could not run blocks the bead
-- `check_unavailable`: the queue never fails open.
ALTER TYPE bead_status ADD VALUE IF NOT EXISTS 'review';
ALTER TYPE bead_status ADD VALUE IF NOT EXISTS 'landing';
ALTER TYPE blocked_reason ADD VALUE IF NOT EXISTS 'check_unavailable';

ALTER TABLE projects
    ADD COLUMN check_command text CHECK (length(check_command) BETWEEN 1 AND 10000),
    ADD COLUMN check_timeout_s integer NOT NULL DEFAULT 1800
        CHECK (check_timeout_s BETWEEN 1 AND 86400),
    ADD COLUMN review text NOT NULL DEFAULT 'none' CHECK (review IN ('none', 'agent', 'human')),
    -- Most beads checked together in one train.
    ADD COLUMN max_train integer NOT NULL DEFAULT 8 CHECK (max_train BETWEEN 1 AND 64),
    -- Review rounds a bead may take before it waits for a person (blocked `needs_human`).
    ADD COLUMN max_review_rounds integer NOT NULL DEFAULT 3
        CHECK (max_review_rounds BETWEEN 1 AND 100);

ALTER TABLE beads
    -- The commit its agent finished on (the tip of `loom/<id>`), while in review or landing.
    ADD COLUMN landing_sha text CHECK (landing_sha ~ '^[0-9a-f]{40}$'),
    -- When it entered the queue: the queue serves priority first, then this, oldest first.
    ADD COLUMN landing_since timestamptz;

CREATE INDEX beads_landing ON beads (project_id, priority, landing_since)
    WHERE landing_sha IS NOT NULL;

-- Each run of a project's check over a train of beads (a train of one when they land one at
-- a time): what was merged onto what, and how it ended. A row without an outcome is a check
-- under way, on the replica `worker`, which beats `heartbeat_at` while it runs; one whose
-- heartbeat stopped (its worker died) is ended `interrupted` by the queue's next owner.
CREATE TABLE checks (
    id uuid PRIMARY KEY,
    project_id text NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    beads text[] NOT NULL CHECK (cardinality(beads) > 0),
    base_sha text NOT NULL,
    tip_sha text NOT NULL,
    -- null: the project has no check command; the train was merged and pushed unchecked.
    command text,
    outcome text CHECK (outcome IN ('green', 'red', 'unavailable', 'interrupted')),
    exit_code integer,
    -- The end of what the check printed, cut to fit.
    output text NOT NULL DEFAULT '',
    -- Whether this check's train was pushed (its beads landed).
    landed boolean NOT NULL DEFAULT false,
    worker uuid NOT NULL,
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    started_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    CHECK ((outcome IS NULL) = (finished_at IS NULL))
);
CREATE INDEX checks_project ON checks (project_id, started_at DESC);
-- One check at a time per project, across replicas: a replica that lost the project's lease
-- while its check ran (cut off, not dead) finishes it before the new owner starts one.
CREATE UNIQUE INDEX checks_one_running ON checks (project_id) WHERE outcome IS NULL;
CREATE INDEX checks_beads ON checks USING gin (beads);
