-- Every change to a record that gateways cache is announced on the channel
-- meshgate_changes, whoever made it (any instance, the CLI, a hand-written UPDATE), once its
-- transaction commits. The payload names the table and the row: {"table": ..., "id": ...}
-- (provider credentials: project_id and provider).
CREATE FUNCTION meshgate_announce_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    r jsonb;
BEGIN
    IF TG_OP = 'DELETE' THEN
        r := to_jsonb(OLD);
    ELSE
        r := to_jsonb(NEW);
    END IF;
    PERFORM pg_notify('meshgate_changes', json_build_object(
        'table', TG_TABLE_NAME,
        'id', r->>'id',
        'project_id', r->>'project_id',
        'provider', r->>'provider')::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER api_keys_announce AFTER INSERT OR UPDATE OR DELETE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION meshgate_announce_change();
CREATE TRIGGER projects_announce AFTER INSERT OR UPDATE OR DELETE ON projects
    FOR EACH ROW EXECUTE FUNCTION meshgate_announce_change();
CREATE TRIGGER signing_keys_announce AFTER INSERT OR UPDATE OR DELETE ON signing_keys
    FOR EACH ROW EXECUTE FUNCTION meshgate_announce_change();
CREATE TRIGGER provider_credentials_announce AFTER INSERT OR UPDATE OR DELETE ON provider_credentials
    FOR EACH ROW EXECUTE FUNCTION meshgate_announce_change();
