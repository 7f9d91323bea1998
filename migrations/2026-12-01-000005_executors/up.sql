-- Executors: one per project across all replicas. The row says which process owns a
-- project's executor until when; an owner renews it, and a lapsed row may be taken over.
CREATE TABLE executor_leases (
    project_id text PRIMARY KEY REFERENCES projects (id) ON DELETE CASCADE,
    -- The owning process (a random id per `loom serve`), and a name for people.
    owner uuid NOT NULL,
    owner_name text NOT NULL,
    acquired_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);

-- The process running a run: NULL until an executor picks it up. A run whose worker is
-- gone is adopted by the project's next owner; only its worker renews the bead's lease.
ALTER TABLE runs ADD COLUMN worker uuid;
-- How many times a run was adopted after its worker died; bounded, so that a bead that
-- crashes its process cannot do so for ever.
ALTER TABLE runs ADD COLUMN resumes integer NOT NULL DEFAULT 0 CHECK (resumes >= 0);
-- What the run did, in the agent's words, and the commit it merged.
ALTER TABLE runs ADD COLUMN summary text;
ALTER TABLE runs ADD COLUMN merged_sha text;
-- An executor looks for its project's open runs.
CREATE INDEX runs_open_bead ON runs (bead_id) WHERE outcome IS NULL;
