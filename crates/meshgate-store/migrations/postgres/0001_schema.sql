-- meshgate schema (PostgreSQL): the tables of the SQLite schema as of its migration 5, with
-- native types. Times are BIGINT unix milliseconds as on SQLite; money is NUMERIC (exact,
-- summed in the database); JSON stays TEXT so that it reads back byte for byte. Ids and other
-- ordered text use the "C" collation: listings sort and page bytewise, as SQLite does.

CREATE TABLE projects (
    id             TEXT COLLATE "C" PRIMARY KEY,
    name           TEXT NOT NULL,
    created_ms     BIGINT NOT NULL,
    settings_json  TEXT NOT NULL DEFAULT '{}'
);

INSERT INTO projects (id, name, created_ms) VALUES ('default', 'default', 0);

CREATE TABLE api_keys (
    id                    TEXT COLLATE "C" PRIMARY KEY,
    project_id            TEXT COLLATE "C" NOT NULL REFERENCES projects(id),
    name                  TEXT NOT NULL,
    prefix                TEXT NOT NULL,
    secret_hash           TEXT NOT NULL UNIQUE,
    created_ms            BIGINT NOT NULL,
    expires_ms            BIGINT,
    revoked_ms            BIGINT,
    policy_json           TEXT NOT NULL DEFAULT '{}',
    rotated_ms            BIGINT,
    previous_secret_hash  TEXT,
    previous_expires_ms   BIGINT
);
CREATE INDEX api_keys_project ON api_keys(project_id);
CREATE UNIQUE INDEX api_keys_previous_secret ON api_keys(previous_secret_hash)
    WHERE previous_secret_hash IS NOT NULL;

CREATE TABLE settings (
    name   TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);

CREATE TABLE usage_events (
    id                   TEXT COLLATE "C" PRIMARY KEY,
    request_id           TEXT NOT NULL,
    project_id           TEXT COLLATE "C" NOT NULL,
    key_id               TEXT COLLATE "C",
    token_id             TEXT COLLATE "C",
    user_name            TEXT COLLATE "C",
    room                 TEXT COLLATE "C",
    delegation_id        TEXT COLLATE "C",
    annotations_json     TEXT NOT NULL DEFAULT '{}',
    surface              TEXT NOT NULL,
    endpoint             TEXT NOT NULL,
    provider             TEXT NOT NULL,
    model                TEXT COLLATE "C",
    requested_model      TEXT,
    deployment           TEXT,
    response_model       TEXT,
    streamed             BOOLEAN NOT NULL,
    status               BIGINT,
    outcome              TEXT NOT NULL,
    input_uncached       BIGINT,
    cache_read           BIGINT,
    cache_write_5m       BIGINT,
    cache_write_1h       BIGINT,
    output               BIGINT,
    reasoning            BIGINT,
    web_search_requests  BIGINT,
    images               BIGINT,
    characters           BIGINT,
    audio_seconds        TEXT,
    service_tier         TEXT,
    usage_json           TEXT NOT NULL,
    cost_usd             NUMERIC,
    markup_usd           NUMERIC,
    price_id             TEXT,
    error                TEXT,
    upstream_request_id  TEXT,
    started_ms           BIGINT NOT NULL,
    ttfb_ms              BIGINT,
    duration_ms          BIGINT NOT NULL
);
CREATE INDEX usage_events_time ON usage_events(project_id, started_ms);
CREATE INDEX usage_events_key ON usage_events(key_id, started_ms);
CREATE INDEX usage_events_model ON usage_events(model, started_ms);
CREATE INDEX usage_events_delegation ON usage_events(delegation_id, started_ms)
    WHERE delegation_id IS NOT NULL;

CREATE TABLE billed_batches (
    batch_id    TEXT PRIMARY KEY,
    project_id  TEXT NOT NULL,
    claimed_ms  BIGINT NOT NULL
);

CREATE TABLE signing_keys (
    id          TEXT COLLATE "C" PRIMARY KEY,
    project_id  TEXT COLLATE "C" NOT NULL REFERENCES projects(id),
    algorithm   TEXT NOT NULL,
    material    TEXT NOT NULL,
    created_ms  BIGINT NOT NULL,
    revoked_ms  BIGINT
);
CREATE INDEX signing_keys_project ON signing_keys(project_id);

CREATE TABLE provider_credentials (
    project_id      TEXT COLLATE "C" NOT NULL REFERENCES projects(id),
    provider        TEXT COLLATE "C" NOT NULL,
    sealed_api_key  TEXT NOT NULL,
    base_url        TEXT,
    updated_ms      BIGINT NOT NULL,
    PRIMARY KEY (project_id, provider)
);

-- Append-only; the balance is the sum. No foreign key to projects, as for usage_events.
CREATE TABLE credit_entries (
    id          TEXT COLLATE "C" PRIMARY KEY,
    project_id  TEXT COLLATE "C" NOT NULL,
    kind        TEXT NOT NULL,
    amount_usd  NUMERIC NOT NULL,
    created_ms  BIGINT NOT NULL,
    actor       TEXT,
    note        TEXT
);
CREATE INDEX credit_entries_project ON credit_entries(project_id, id);

CREATE TABLE audit_events (
    id            TEXT COLLATE "C" PRIMARY KEY,
    at_ms         BIGINT NOT NULL,
    actor         TEXT NOT NULL,
    project_id    TEXT COLLATE "C",
    action        TEXT NOT NULL,
    target        TEXT,
    details_json  TEXT NOT NULL
);
CREATE INDEX audit_events_project ON audit_events(project_id, id);

CREATE TABLE resource_owners (
    resource_id  TEXT PRIMARY KEY,
    project_id   TEXT NOT NULL,
    kind         TEXT NOT NULL,
    created_ms   BIGINT NOT NULL
);
