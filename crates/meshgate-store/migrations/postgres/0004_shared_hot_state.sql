-- The hot state a fleet shares through PostgreSQL when it has no Redis (the gateway's
-- `pghot` module reads and changes it; nothing else does): budget and credit accounts with
-- what calls in flight hold, those calls' reservations, and rate-limit counters per scope
-- and minute. The gateway changes them only in transactions that lock the account rows
-- first, in name order, so two instances never interleave between checking a limit and
-- reserving against it.

-- One account a call may spend from, named as the gateway names it: budget:key:<id>:total,
-- budget:key:<id>:day:<days since the epoch>, budget:project:<id>:month:<year*12+month0>,
-- budget:delegation:<id>, budget:credits:<project>. `spent` is what the ledger held when
-- the account was loaded plus every charge settled since; credits load `spent` 0 and the
-- balance into `balance`. An account untouched for a day is deleted and, when next
-- needed, loaded again from the ledger.
CREATE TABLE hot_accounts (
    name        TEXT COLLATE "C" PRIMARY KEY,
    spent       NUMERIC NOT NULL,
    reserved    NUMERIC NOT NULL DEFAULT 0,
    balance     NUMERIC,
    touched_ms  BIGINT NOT NULL
);

-- What each call in flight reserved, and where, until it settles or its deadline passes
-- (its instance died): any instance then releases it.
CREATE TABLE hot_reservations (
    id           TEXT COLLATE "C" PRIMARY KEY,
    amount       NUMERIC NOT NULL,
    accounts     TEXT[] NOT NULL,
    deadline_ms  BIGINT NOT NULL
);
CREATE INDEX hot_reservations_deadline ON hot_reservations(deadline_ms);

-- Requests admitted and tokens used per scope (key:<id>, project:<id>, credential:<id>)
-- and minute since the epoch; rows older than a few minutes are deleted.
CREATE TABLE hot_rates (
    scope     TEXT COLLATE "C" NOT NULL,
    minute    BIGINT NOT NULL,
    requests  BIGINT NOT NULL DEFAULT 0,
    tokens    BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (scope, minute)
);

-- Credits added (grants, purchases, refunds, adjustments; usage debits are charged by the
-- gateway as calls settle) move the shared balance in the same transaction as the entry,
-- once, whichever instance or program wrote it. An absent balance is created here from
-- the whole ledger, so that a gateway loading it concurrently cannot miss the entry: its
-- load (INSERT ... ON CONFLICT DO NOTHING) either finds this row, or was inserted first and
-- gets the entry added.
CREATE FUNCTION meshgate_hot_credits() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    g record;
BEGIN
    FOR g IN SELECT project_id, SUM(amount_usd) AS added FROM added_entries
             WHERE kind <> 'usage_debit' GROUP BY project_id ORDER BY project_id
    LOOP
        INSERT INTO hot_accounts (name, spent, reserved, balance, touched_ms)
        VALUES ('budget:credits:' || g.project_id, 0, 0,
                (SELECT COALESCE(SUM(amount_usd), 0) FROM credit_entries
                 WHERE project_id = g.project_id),
                (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT)
        ON CONFLICT (name) DO UPDATE
            SET balance = COALESCE(hot_accounts.balance, 0) + g.added,
                touched_ms = EXCLUDED.touched_ms;
    END LOOP;
    RETURN NULL;
END
$$;

CREATE TRIGGER credit_entries_hot AFTER INSERT ON credit_entries
    REFERENCING NEW TABLE AS added_entries
    FOR EACH STATEMENT EXECUTE FUNCTION meshgate_hot_credits();
