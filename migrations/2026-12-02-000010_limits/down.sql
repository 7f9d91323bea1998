DROP INDEX gateway_calls_created_run;
DROP TABLE spend_holds;
ALTER TABLE projects DROP COLUMN token_budget, DROP COLUMN max_in_progress,
    DROP COLUMN max_awaiting_merge;
