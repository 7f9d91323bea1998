-- Every try at the LLM gateway, successful or not: who it was for, the model, tokens,
-- latency and how it ended. Analytics and spend limits read it; nothing updates it.
CREATE TABLE gateway_calls (
    id bigserial PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now(),
    -- No foreign keys: the record of spend outlives the runs and agents it was for.
    run_id uuid,
    agent_id uuid,
    model text NOT NULL,
    -- 1 for the first try of a call, 2 for its first retry, ...
    attempt integer NOT NULL CHECK (attempt >= 1),
    streamed boolean NOT NULL,
    ok boolean NOT NULL,
    http_status smallint,
    prompt_tokens bigint NOT NULL DEFAULT 0 CHECK (prompt_tokens >= 0),
    completion_tokens bigint NOT NULL DEFAULT 0 CHECK (completion_tokens >= 0),
    latency_ms bigint NOT NULL CHECK (latency_ms >= 0),
    error text
);
CREATE INDEX gateway_calls_run ON gateway_calls (run_id) WHERE run_id IS NOT NULL;
-- Spend over a rolling window reads the newest rows.
CREATE INDEX gateway_calls_created ON gateway_calls (created_at);
