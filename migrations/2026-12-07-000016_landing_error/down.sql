ALTER TABLE projects DROP COLUMN IF EXISTS landing_error_since, DROP COLUMN IF EXISTS landing_error;
