ALTER TABLE projects DROP COLUMN repo_state, DROP COLUMN repo_error, DROP COLUMN repo_checked_at;
