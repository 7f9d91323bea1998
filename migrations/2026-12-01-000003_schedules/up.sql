-- Recurring work: a cron expression and the template of the bead it files. The ticker
-- files the bead when next_run_at has passed, unless a bead it filed is still not closed.
CREATE TABLE schedules (
    id uuid PRIMARY KEY,
    project_id text NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    cron text NOT NULL,
    title text NOT NULL CHECK (char_length(title) BETWEEN 1 AND 200),
    description text NOT NULL DEFAULT '',
    bead_type bead_type NOT NULL DEFAULT 'task',
    priority smallint NOT NULL DEFAULT 2 CHECK (priority BETWEEN 0 AND 4),
    labels text[] NOT NULL DEFAULT '{}' CHECK (array_position(labels, NULL) IS NULL),
    persona text,
    enabled boolean NOT NULL DEFAULT true,
    next_run_at timestamptz NOT NULL,
    last_run_at timestamptz,
    last_bead_id text,
    created_by_user_id uuid REFERENCES users (id) ON DELETE SET NULL,
    -- optimistic concurrency for edits, as on beads
    version integer NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX schedules_project ON schedules (project_id, id);
CREATE INDEX schedules_due ON schedules (next_run_at) WHERE enabled;

ALTER TABLE beads ADD COLUMN schedule_id uuid REFERENCES schedules (id) ON DELETE SET NULL;
-- "Is a bead from this schedule still open?" is asked at every firing, and deleting a
-- schedule unlinks its beads by this column.
CREATE INDEX beads_schedule ON beads (schedule_id) WHERE schedule_id IS NOT NULL;
