DROP INDEX conversations_one_open_per_bead;
DROP INDEX beads_ready;
DROP INDEX beads_ready_project;
DROP INDEX beads_not_ready;
ALTER TABLE beads DROP COLUMN paired_in;
CREATE INDEX beads_ready ON beads (priority, created_at, id)
    WHERE status = 'open' AND bead_type <> 'epic' AND open_blockers = 0 AND held_by IS NULL;
CREATE INDEX beads_ready_project ON beads (project_id, priority, created_at, id)
    WHERE status = 'open' AND bead_type <> 'epic' AND open_blockers = 0 AND held_by IS NULL;
CREATE INDEX beads_not_ready ON beads (priority, created_at, id)
    WHERE status IN ('blocked', 'deferred')
       OR (status = 'open' AND (open_blockers > 0 OR held_by IS NOT NULL OR not_before IS NOT NULL));
