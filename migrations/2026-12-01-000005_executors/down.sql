DROP INDEX runs_open_bead;
ALTER TABLE runs DROP COLUMN merged_sha;
ALTER TABLE runs DROP COLUMN summary;
ALTER TABLE runs DROP COLUMN resumes;
ALTER TABLE runs DROP COLUMN worker;
DROP TABLE executor_leases;
