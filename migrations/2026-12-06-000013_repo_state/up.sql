-- Whether Loom could reach a project's repository the last time it tried (issue 18): a run
-- that cannot fetch or clone it ends uncharged and marks the project `unreachable` with the
-- error (credentials masked); the dispatcher skips such a project and the ticker tries the
-- repository again until it answers.
ALTER TABLE projects
    ADD COLUMN repo_state text NOT NULL DEFAULT 'ok' CHECK (repo_state IN ('ok', 'unreachable')),
    ADD COLUMN repo_error text,
    ADD COLUMN repo_checked_at timestamptz;
