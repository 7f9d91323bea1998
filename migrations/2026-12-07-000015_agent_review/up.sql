-- Agent review (issue 20): a run is either an agent's work on a bead or an agent's review of
-- the work waiting in `review`. A review run holds the bead (assignee, lease) while the bead
-- stays in review; it charges no attempt.
ALTER TABLE runs
    ADD COLUMN kind text NOT NULL DEFAULT 'work' CHECK (kind IN ('work', 'review'));
