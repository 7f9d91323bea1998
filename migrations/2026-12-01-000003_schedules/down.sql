ALTER TABLE beads DROP COLUMN schedule_id;
DROP TABLE schedules;
