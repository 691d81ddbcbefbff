-- Credits added by any instance (grants, purchases, refunds, adjustments; not the usage
-- debits every call writes) are announced on meshgate_changes with their exact amount, so
-- every instance moves the balance it holds in memory: {"table": "credit_entries", "id",
-- "project_id", "amount_usd"}.
CREATE FUNCTION meshgate_announce_credit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('meshgate_changes', json_build_object(
        'table', TG_TABLE_NAME,
        'id', NEW.id,
        'project_id', NEW.project_id,
        'amount_usd', NEW.amount_usd::text)::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER credit_entries_announce AFTER INSERT ON credit_entries
    FOR EACH ROW WHEN (NEW.kind <> 'usage_debit') EXECUTE FUNCTION meshgate_announce_credit();
