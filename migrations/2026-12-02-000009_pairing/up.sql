-- A person pairing on a bead holds it back from autonomous work: `paired_in` names the open
-- conversation, and while it is set the bead is not ready (the executor never works a bead
-- a person is working on). Handing the conversation off clears it.
ALTER TABLE beads ADD COLUMN paired_in uuid REFERENCES conversations (id) ON DELETE SET NULL;

-- The ready and not-ready indexes with the new test in their predicates.
DROP INDEX beads_ready;
DROP INDEX beads_ready_project;
DROP INDEX beads_not_ready;
CREATE INDEX beads_ready ON beads (priority, created_at, id)
    WHERE status = 'open' AND bead_type <> 'epic' AND open_blockers = 0 AND held_by IS NULL
      AND paired_in IS NULL;
CREATE INDEX beads_ready_project ON beads (project_id, priority, created_at, id)
    WHERE status = 'open' AND bead_type <> 'epic' AND open_blockers = 0 AND held_by IS NULL
      AND paired_in IS NULL;
CREATE INDEX beads_not_ready ON beads (priority, created_at, id)
    WHERE status IN ('blocked', 'deferred')
       OR (status = 'open' AND (open_blockers > 0 OR held_by IS NOT NULL OR not_before IS NOT NULL
                                OR paired_in IS NOT NULL));

-- One person pairing on a bead at a time: at most one open conversation per bead.
CREATE UNIQUE INDEX conversations_one_open_per_bead ON conversations (bead_id)
    WHERE status = 'open' AND bead_id IS NOT NULL;
