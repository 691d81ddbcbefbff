-- Routing: the model name the client sent (an alias, `provider/model`, ...) beside the
-- model that served the call (`model`), and the deployment it went to.
ALTER TABLE usage_events ADD COLUMN requested_model TEXT;
ALTER TABLE usage_events ADD COLUMN deployment TEXT;
