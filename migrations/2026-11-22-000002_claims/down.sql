DROP INDEX agents_status;
DROP INDEX beads_lease;
DROP INDEX runs_one_open_per_agent;
DROP INDEX runs_one_open_per_bead;
