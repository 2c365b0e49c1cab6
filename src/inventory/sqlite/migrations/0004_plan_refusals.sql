-- nhn inventory, schema version 4: a switch plan refused for a MAC budget is visible per edge
-- (`nhn switch show`, the status page, /metrics), not only in the log.
ALTER TABLE switch_status ADD COLUMN plan_refusal TEXT;
ALTER TABLE switch_status ADD COLUMN plan_refused_at TEXT;
