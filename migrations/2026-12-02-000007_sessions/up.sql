-- Browser sessions: the cookie holds a random secret, the table its SHA-256 digest (a leaked
-- table opens no session). Each session has its own CSRF token for forms and for
-- cookie-authenticated API writes. A session ends at logout, after `idle` without use, or at
-- its absolute `expires_at`, whichever comes first.
CREATE TABLE sessions (
    id_hash bytea PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf_token text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    address text,
    user_agent text
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_expiry ON sessions (expires_at);
