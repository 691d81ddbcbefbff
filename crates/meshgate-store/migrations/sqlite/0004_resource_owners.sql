-- Provider-side objects (message batches, stored responses) and the project that created
-- them: every project calls the provider with the same account, so meshgate alone keeps
-- one project from reading another's objects. The first owner recorded wins.
CREATE TABLE resource_owners (
    resource_id  TEXT PRIMARY KEY,
    project_id   TEXT NOT NULL,
    kind         TEXT NOT NULL,
    created_ms   INTEGER NOT NULL
);
