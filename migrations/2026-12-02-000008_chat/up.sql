-- Pair-programming chat. A conversation is a person and a persona (through an agent, or
-- the persona alone) on a project, optionally on one bead. Every message persists with its
-- author and tokens; every event a reply streams persists too (`chat_events`), so a reader
-- resumes after `Last-Event-ID` from here. One reply at a time per conversation: at most
-- one message of a conversation is `streaming`.
CREATE TYPE conversation_status AS ENUM ('open', 'handed_off');
CREATE TABLE conversations (
    id uuid PRIMARY KEY,
    project_id text NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    bead_id text REFERENCES beads (id) ON DELETE CASCADE,
    agent_id uuid REFERENCES agents (id) ON DELETE SET NULL,
    persona text NOT NULL REFERENCES personas (name),
    title text NOT NULL,
    status conversation_status NOT NULL DEFAULT 'open',
    created_by_user_id uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX conversations_project ON conversations (project_id, updated_at DESC, id DESC);
CREATE INDEX conversations_bead ON conversations (bead_id, updated_at DESC) WHERE bead_id IS NOT NULL;

CREATE TYPE chat_role AS ENUM ('user', 'assistant');
CREATE TYPE chat_state AS ENUM ('complete', 'streaming', 'stopped', 'failed');
CREATE TABLE chat_messages (
    id bigserial PRIMARY KEY,
    conversation_id uuid NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    role chat_role NOT NULL,
    author_user_id uuid REFERENCES users (id) ON DELETE SET NULL,
    author_agent_id uuid REFERENCES agents (id) ON DELETE SET NULL,
    body text NOT NULL DEFAULT '',
    state chat_state NOT NULL DEFAULT 'complete',
    prompt_tokens bigint NOT NULL DEFAULT 0,
    completion_tokens bigint NOT NULL DEFAULT 0,
    error text,
    -- A streaming reply's owner renews this; a reply whose process died is failed after it.
    lease_expires_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    CHECK ((state = 'streaming') = (lease_expires_at IS NOT NULL))
);
CREATE INDEX chat_messages_conversation ON chat_messages (conversation_id, id);
CREATE UNIQUE INDEX chat_one_reply ON chat_messages (conversation_id) WHERE state = 'streaming';

CREATE TABLE chat_events (
    id bigserial PRIMARY KEY,
    conversation_id uuid NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    message_id bigint REFERENCES chat_messages (id) ON DELETE CASCADE,
    kind text NOT NULL CHECK (kind IN ('message', 'delta', 'action', 'action_result', 'done', 'error')),
    data jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX chat_events_conversation ON chat_events (conversation_id, id);
