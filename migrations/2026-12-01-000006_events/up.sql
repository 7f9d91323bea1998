-- The activity feed in commit order. `tx` is the writing transaction's id: a row is
-- delivered once every transaction that started before it has ended (its id is below the
-- oldest running transaction's), so a stream in (tx, id) order never skips a row that
-- commits late, and never repeats one. `origin` names the replica that wrote the row
-- (its connections' application_name); that replica alone publishes it on the bus.
ALTER TABLE activity ADD COLUMN tx bigint NOT NULL DEFAULT (pg_current_xact_id()::text::bigint);
ALTER TABLE activity ADD COLUMN origin text NOT NULL DEFAULT current_setting('application_name');
CREATE INDEX activity_feed ON activity (tx, id);
CREATE INDEX activity_agent ON activity (actor_agent_id, id) WHERE actor_agent_id IS NOT NULL;

-- Durable readers of the feed (the notifier): where each has got to, moved in the same
-- transaction as what it did with the rows.
CREATE TABLE feed_cursors (
    name text PRIMARY KEY,
    tx bigint NOT NULL,
    id bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- People follow projects: P0 beads filed there and questions for a human notify them.
CREATE TABLE project_watchers (
    project_id text NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, user_id)
);
CREATE INDEX project_watchers_user ON project_watchers (user_id);

-- One unread notification per user, subject and reason; a repeat raises its count.
-- `seq` grows each time it is raised (the notifier is the one writer, so in commit order):
-- the notification stream resumes from it.
CREATE SEQUENCE notification_seq;
CREATE TABLE notifications (
    id bigserial PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    reason text NOT NULL,
    subject text NOT NULL,
    project_id text,
    bead_id text,
    activity_id bigint NOT NULL,
    title text NOT NULL,
    count integer NOT NULL DEFAULT 1 CHECK (count > 0),
    seq bigint NOT NULL DEFAULT nextval('notification_seq'),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    read_at timestamptz
);
CREATE UNIQUE INDEX notifications_unread_subject ON notifications (user_id, subject, reason)
    WHERE read_at IS NULL;
CREATE INDEX notifications_user ON notifications (user_id, id);
CREATE INDEX notifications_user_seq ON notifications (user_id, seq);
