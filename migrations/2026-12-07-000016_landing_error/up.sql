-- Why a project's landing queue is stuck (a push refused, the repository gone): set by the
-- replica that runs the queue when a step fails, kept with when the failing began, cleared
-- by the next step that does not fail. People read it in the queue view.
ALTER TABLE projects
    ADD COLUMN landing_error text,
    ADD COLUMN landing_error_since timestamptz;
