-- meshgate schema v3 (SQLite): project settings, key policies and rotation, participant
-- attribution and markup on usage, signing keys, provider credentials, the credit ledger and
-- the audit log.
-- Money stays an exact decimal string, summed in Rust (SQLite would sum REAL). Ids of ledger
-- rows (usage, credits, audit) sort by time, so "newest first" is ORDER BY id DESC.

-- Serialised ProjectSettings; '{}' reads as the defaults.
ALTER TABLE projects ADD COLUMN settings_json TEXT NOT NULL DEFAULT '{}';

-- Serialised Policy; '{}' is "everything allowed, no limits".
ALTER TABLE api_keys ADD COLUMN policy_json TEXT NOT NULL DEFAULT '{}';
ALTER TABLE api_keys ADD COLUMN rotated_ms INTEGER;
-- The secret before the last rotation, accepted until previous_expires_ms.
ALTER TABLE api_keys ADD COLUMN previous_secret_hash TEXT;
ALTER TABLE api_keys ADD COLUMN previous_expires_ms INTEGER;
-- ALTER TABLE cannot add a UNIQUE column: a partial unique index does it.
CREATE UNIQUE INDEX api_keys_previous_secret ON api_keys(previous_secret_hash)
    WHERE previous_secret_hash IS NOT NULL;

ALTER TABLE usage_events ADD COLUMN token_id TEXT;        -- participant token jti
ALTER TABLE usage_events ADD COLUMN user_name TEXT;       -- participant identity or OAuth subject
ALTER TABLE usage_events ADD COLUMN room TEXT;
ALTER TABLE usage_events ADD COLUMN delegation_id TEXT;
ALTER TABLE usage_events ADD COLUMN annotations_json TEXT NOT NULL DEFAULT '{}';
ALTER TABLE usage_events ADD COLUMN markup_usd TEXT;      -- exact decimal; NULL when none
-- Delegation spend limits sum by delegation over a window (project and key have theirs).
CREATE INDEX usage_events_delegation ON usage_events(delegation_id, started_ms)
    WHERE delegation_id IS NOT NULL;

CREATE TABLE signing_keys (
    id          TEXT PRIMARY KEY,
    project_id  TEXT NOT NULL REFERENCES projects(id),
    algorithm   TEXT NOT NULL,                -- HS256 | EdDSA
    material    TEXT NOT NULL,                -- sealed HS256 secret or Ed25519 public key
    created_ms  INTEGER NOT NULL,
    revoked_ms  INTEGER
);
CREATE INDEX signing_keys_project ON signing_keys(project_id);

CREATE TABLE provider_credentials (
    project_id      TEXT NOT NULL REFERENCES projects(id),
    provider        TEXT NOT NULL,
    sealed_api_key  TEXT NOT NULL,            -- encrypted by the gateway
    base_url        TEXT,
    updated_ms      INTEGER NOT NULL,
    PRIMARY KEY (project_id, provider)
);

-- Append-only; the balance is the sum. No foreign key to projects, as for usage_events: usage
-- debits are written in the ledger writer's transaction, which must not be refused.
CREATE TABLE credit_entries (
    id          TEXT PRIMARY KEY,
    project_id  TEXT NOT NULL,
    kind        TEXT NOT NULL,                -- grant | purchase | usage_debit | refund | adjustment
    amount_usd  TEXT NOT NULL,                -- exact decimal; debits negative
    created_ms  INTEGER NOT NULL,
    actor       TEXT,
    note        TEXT
);
CREATE INDEX credit_entries_project ON credit_entries(project_id, id);

-- Kept when its project goes away: no foreign key.
CREATE TABLE audit_events (
    id            TEXT PRIMARY KEY,
    at_ms         INTEGER NOT NULL,
    actor         TEXT NOT NULL,
    project_id    TEXT,
    action        TEXT NOT NULL,
    target        TEXT,
    details_json  TEXT NOT NULL
);
CREATE INDEX audit_events_project ON audit_events(project_id, id);
