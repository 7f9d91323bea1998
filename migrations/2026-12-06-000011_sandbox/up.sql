-- The sandbox (issue 17): a bead whose commands found no sandbox waits, uncharged, as
-- blocked `sandbox_unavailable` (its run ended so); and a project's sandbox settings: whether
-- its commands may reach the network, and a command run with the network open before each
-- run's first turn (`npm ci`, say).
ALTER TYPE blocked_reason ADD VALUE 'sandbox_unavailable';
ALTER TYPE run_outcome ADD VALUE 'sandbox_unavailable';

ALTER TABLE projects
    ADD COLUMN network text NOT NULL DEFAULT 'none' CHECK (network IN ('none', 'open')),
    ADD COLUMN setup_command text CHECK (length(setup_command) BETWEEN 1 AND 10000);
