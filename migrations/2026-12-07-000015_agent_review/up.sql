-- Agent review (issue 20): a run is either an agent's work on a bead or an agent's review of
-- the work waiting in `review`. A review run holds the bead (assignee, lease) while the bead
-- stays in review; it charges no attempt.
ALTER TABLE runs
    ADD COLUMN kind text NOT NULL DEFAULT 'work' CHECK (kind IN ('work', 'review'));

-- A bead waiting in review since before this change has no `landing_since`: it is counted
-- from its last change, so the reviews of its work are counted and it is served in order.
UPDATE beads SET landing_since = updated_at WHERE status = 'review' AND landing_since IS NULL;
