-- meshgate schema v1 (SQLite). PostgreSQL gets the same tables with native types.
-- Times are integer unix milliseconds; money is an exact decimal string (NUMERIC on PostgreSQL).

CREATE TABLE projects (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_ms  INTEGER NOT NULL
);

INSERT INTO projects (id, name, created_ms) VALUES ('default', 'default', 0);

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,            -- public id, e.g. key_01J...
    project_id   TEXT NOT NULL REFERENCES projects(id),
    name         TEXT NOT NULL,
    prefix       TEXT NOT NULL,               -- first characters of the secret, for display
    secret_hash  TEXT NOT NULL UNIQUE,        -- sha256 of the secret, hex
    created_ms   INTEGER NOT NULL,
    expires_ms   INTEGER,
    revoked_ms   INTEGER
);
CREATE INDEX api_keys_project ON api_keys(project_id);

CREATE TABLE settings (
    name   TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);

CREATE TABLE usage_events (
    id                   TEXT PRIMARY KEY,    -- uuid v7: sorts by time
    request_id           TEXT NOT NULL,
    project_id           TEXT NOT NULL,
    key_id               TEXT,
    surface              TEXT NOT NULL,       -- openai | anthropic
    endpoint             TEXT NOT NULL,
    provider             TEXT NOT NULL,
    model                TEXT,                -- as the client asked
    response_model       TEXT,                -- as the provider answered
    streamed             INTEGER NOT NULL,
    status               INTEGER,             -- upstream HTTP status; NULL when none came
    outcome              TEXT NOT NULL,       -- ok | upstream_error | client_cancelled | incomplete | upstream_unreachable | upstream_timeout
    input_uncached       INTEGER,
    cache_read           INTEGER,
    cache_write_5m       INTEGER,
    cache_write_1h       INTEGER,
    output               INTEGER,
    reasoning            INTEGER,
    web_search_requests  INTEGER,
    images               INTEGER,
    characters           INTEGER,
    audio_seconds        TEXT,
    service_tier         TEXT,
    usage_json           TEXT NOT NULL,       -- the full normalised usage, for audits
    cost_usd             TEXT,                -- exact decimal; NULL when nothing billable was reported
    price_id             TEXT,                -- which price the cost was computed at
    error                TEXT,
    upstream_request_id  TEXT,
    started_ms           INTEGER NOT NULL,
    ttfb_ms              INTEGER,
    duration_ms          INTEGER NOT NULL
);
CREATE INDEX usage_events_time ON usage_events(project_id, started_ms);
CREATE INDEX usage_events_key ON usage_events(key_id, started_ms);
CREATE INDEX usage_events_model ON usage_events(model, started_ms);
