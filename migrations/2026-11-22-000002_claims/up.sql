-- Claims: the database itself refuses a second open run for a bead or for an agent, so no
-- dispatcher bug can give a bead to two agents or an agent two beads.
CREATE UNIQUE INDEX runs_one_open_per_bead ON runs (bead_id) WHERE outcome IS NULL;
CREATE UNIQUE INDEX runs_one_open_per_agent ON runs (agent_id) WHERE outcome IS NULL;
-- The ticker finds expired leases by time.
CREATE INDEX beads_lease ON beads (lease_expires_at) WHERE status = 'in_progress';
-- Idle agents are what the dispatcher looks for first.
CREATE INDEX agents_status ON agents (status);
