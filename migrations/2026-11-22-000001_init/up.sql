-- The foundation: people, their tokens, projects, personas, agents, beads with
-- their dependency graph, comments, runs and the activity history.

CREATE TYPE user_role AS ENUM ('admin', 'member', 'viewer');
CREATE TYPE agent_status AS ENUM ('idle', 'working', 'paused', 'offline');
CREATE TYPE bead_status AS ENUM ('open', 'in_progress', 'blocked', 'deferred', 'closed');
CREATE TYPE bead_type AS ENUM ('task', 'bug', 'feature', 'epic', 'chore', 'decision');
CREATE TYPE blocked_reason AS ENUM (
    'needs_human', 'loop_detected', 'too_many_attempts',
    'gateway_unavailable', 'merge_conflict', 'manual'
);
-- `parent-child` is not an edge kind here: a bead's parent is `beads.parent_id`,
-- so a bead has at most one parent by construction.
CREATE TYPE dependency_kind AS ENUM ('blocks', 'related', 'discovered-from');
CREATE TYPE run_outcome AS ENUM (
    'success', 'failed', 'lease_expired', 'invalid_replies', 'loop_detected',
    'turn_limit', 'token_budget', 'gateway_unavailable', 'needs_human',
    'merge_conflict', 'cancelled'
);

CREATE TABLE users (
    id uuid PRIMARY KEY,
    username text NOT NULL UNIQUE,
    password_hash text NOT NULL,
    role user_role NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_tokens (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name text NOT NULL,
    -- SHA-256 of the secret: tokens are 256 random bits, so a fast hash is safe
    -- and keeps per-request authentication cheap.
    token_hash bytea NOT NULL UNIQUE,
    -- the first characters of the secret, so a person can tell tokens apart
    prefix text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    expires_at timestamptz
);
CREATE INDEX api_tokens_user ON api_tokens (user_id);

CREATE TABLE projects (
    id text PRIMARY KEY,
    name text NOT NULL,
    repo text NOT NULL,
    branch text NOT NULL DEFAULT 'main',
    prefix text NOT NULL UNIQUE,
    max_parallel integer NOT NULL DEFAULT 2 CHECK (max_parallel BETWEEN 1 AND 64),
    max_attempts integer NOT NULL DEFAULT 3 CHECK (max_attempts BETWEEN 1 AND 100),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE personas (
    name text PRIMARY KEY,
    display_name text NOT NULL,
    role text NOT NULL,
    description text NOT NULL DEFAULT '',
    labels text[] NOT NULL DEFAULT '{}' CHECK (array_position(labels, NULL) IS NULL),
    instructions text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE agents (
    id uuid PRIMARY KEY,
    name text NOT NULL UNIQUE,
    persona text NOT NULL REFERENCES personas (name) ON UPDATE CASCADE,
    project_id text REFERENCES projects (id) ON DELETE CASCADE,
    status agent_status NOT NULL DEFAULT 'idle',
    last_heartbeat_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE beads (
    id text PRIMARY KEY,
    project_id text NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    title text NOT NULL CHECK (char_length(title) BETWEEN 1 AND 200),
    description text NOT NULL DEFAULT '',
    bead_type bead_type NOT NULL DEFAULT 'task',
    priority smallint NOT NULL DEFAULT 2 CHECK (priority BETWEEN 0 AND 4),
    status bead_status NOT NULL DEFAULT 'open',
    blocked_reason blocked_reason,
    -- what a person needs to know or answer about a blocked bead
    blocked_note text,
    labels text[] NOT NULL DEFAULT '{}',
    persona text,
    assignee_agent_id uuid REFERENCES agents (id) ON DELETE SET NULL,
    parent_id text REFERENCES beads (id),
    created_by_user_id uuid REFERENCES users (id) ON DELETE SET NULL,
    created_by_agent_id uuid REFERENCES agents (id) ON DELETE SET NULL,
    close_reason text,
    attempts integer NOT NULL DEFAULT 0,
    last_error text,
    -- retry back-off: not ready before this time
    not_before timestamptz,
    -- a deferred bead with a time comes back then; without one it waits forever
    defer_until timestamptz,
    lease_expires_at timestamptz,
    -- Readiness kept in the same transaction as every change, so the ready query
    -- is an index range scan at any size:
    --   open_blockers: `blocks` edges from this bead to beads that are not closed
    --   held_by: the nearest ancestor that holds this bead back (blocked,
    --            deferred or with open blockers), directly or through its own parent
    open_blockers integer NOT NULL DEFAULT 0 CHECK (open_blockers >= 0),
    held_by text,
    -- the last `<parent>.<n>` suffix handed out to a child
    child_seq integer NOT NULL DEFAULT 0,
    version integer NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    closed_at timestamptz,
    CHECK ((status = 'blocked') = (blocked_reason IS NOT NULL)),
    CHECK ((status = 'closed') = (closed_at IS NOT NULL)),
    CHECK (parent_id IS NULL OR parent_id <> id),
    CHECK (array_position(labels, NULL) IS NULL)
);

-- Dispatch order over ready beads, fleet-wide and per project. Beads leave the
-- index as soon as they stop being ready, so a top-N read touches N entries.
CREATE INDEX beads_ready ON beads (priority, created_at, id)
    WHERE status = 'open' AND bead_type <> 'epic' AND open_blockers = 0 AND held_by IS NULL;
CREATE INDEX beads_ready_project ON beads (project_id, priority, created_at, id)
    WHERE status = 'open' AND bead_type <> 'epic' AND open_blockers = 0 AND held_by IS NULL;
-- Listing, in the same order: by project and status, by project, by status, and all.
-- A list query then reads its page straight off an index instead of sorting the table.
CREATE INDEX beads_list_project_status ON beads (project_id, status, priority, created_at, id);
CREATE INDEX beads_list_project ON beads (project_id, priority, created_at, id);
CREATE INDEX beads_list_status ON beads (status, priority, created_at, id);
CREATE INDEX beads_list ON beads (priority, created_at, id);
CREATE INDEX beads_parent ON beads (parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX beads_assignee ON beads (assignee_agent_id) WHERE assignee_agent_id IS NOT NULL;
CREATE INDEX beads_labels ON beads USING gin (labels);
-- what is not ready: blocked/deferred beads and open beads held back
CREATE INDEX beads_not_ready ON beads (priority, created_at, id)
    WHERE status IN ('blocked', 'deferred')
       OR (status = 'open' AND (open_blockers > 0 OR held_by IS NOT NULL OR not_before IS NOT NULL));

CREATE TABLE bead_dependencies (
    bead_id text NOT NULL REFERENCES beads (id) ON DELETE CASCADE,
    depends_on text NOT NULL REFERENCES beads (id) ON DELETE CASCADE,
    kind dependency_kind NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (bead_id, depends_on, kind),
    CHECK (bead_id <> depends_on)
);
CREATE INDEX bead_dependencies_reverse ON bead_dependencies (depends_on, kind);

CREATE TABLE comments (
    id uuid PRIMARY KEY,
    bead_id text NOT NULL REFERENCES beads (id) ON DELETE CASCADE,
    author_user_id uuid REFERENCES users (id) ON DELETE SET NULL,
    author_agent_id uuid REFERENCES agents (id) ON DELETE SET NULL,
    body text NOT NULL CHECK (char_length(body) BETWEEN 1 AND 65536),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX comments_bead ON comments (bead_id, created_at, id);

CREATE TABLE runs (
    id uuid PRIMARY KEY,
    bead_id text NOT NULL REFERENCES beads (id) ON DELETE CASCADE,
    agent_id uuid REFERENCES agents (id) ON DELETE SET NULL,
    attempt integer NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    ended_at timestamptz,
    outcome run_outcome,
    turns integer NOT NULL DEFAULT 0,
    prompt_tokens bigint NOT NULL DEFAULT 0,
    completion_tokens bigint NOT NULL DEFAULT 0,
    error text,
    CHECK ((ended_at IS NULL) = (outcome IS NULL))
);
CREATE INDEX runs_bead ON runs (bead_id, started_at);
CREATE INDEX runs_open ON runs (started_at) WHERE outcome IS NULL;

CREATE TABLE run_steps (
    id bigserial PRIMARY KEY,
    run_id uuid NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    turn integer NOT NULL,
    action jsonb NOT NULL,
    ok boolean NOT NULL,
    result text NOT NULL,
    prompt_tokens bigint NOT NULL DEFAULT 0,
    completion_tokens bigint NOT NULL DEFAULT 0,
    started_at timestamptz NOT NULL DEFAULT now(),
    duration_ms bigint NOT NULL DEFAULT 0
);
CREATE INDEX run_steps_run ON run_steps (run_id, id);

-- The durable history of every change. No foreign keys on purpose: history
-- outlives the rows it talks about.
CREATE TABLE activity (
    id bigserial PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now(),
    kind text NOT NULL,
    project_id text,
    bead_id text,
    actor_user_id uuid,
    actor_agent_id uuid,
    data jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX activity_project ON activity (project_id, id) WHERE project_id IS NOT NULL;
CREATE INDEX activity_bead ON activity (bead_id, id) WHERE bead_id IS NOT NULL;
CREATE INDEX activity_kind ON activity (kind, id);
