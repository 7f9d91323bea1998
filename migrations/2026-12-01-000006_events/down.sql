DROP TABLE notifications;
DROP SEQUENCE notification_seq;
DROP TABLE project_watchers;
DROP TABLE feed_cursors;
DROP INDEX activity_agent;
DROP INDEX activity_feed;
ALTER TABLE activity DROP COLUMN origin;
ALTER TABLE activity DROP COLUMN tx;
