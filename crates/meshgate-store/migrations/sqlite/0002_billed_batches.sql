-- Batch results are billed once: the first fetch of a batch's results claims it.
CREATE TABLE billed_batches (
    batch_id    TEXT PRIMARY KEY,
    project_id  TEXT NOT NULL,
    claimed_ms  INTEGER NOT NULL
);
