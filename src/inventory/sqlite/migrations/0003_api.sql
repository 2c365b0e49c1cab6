-- nhn inventory, schema version 3: what the HaaS API and its job engine look up on every call.
-- A VM's latest async request (getVmStatus' CommandStatus), and the purge of old requests.
CREATE INDEX requests_resource ON requests(resource_type, resource_id, accepted_at);
CREATE INDEX requests_finished ON requests(finished_at) WHERE status IN ('succeeded', 'failed', 'canceled');
