-- requests.args held an async call's XML-RPC arguments; it now holds the request's work
-- (model::Work) as JSON, and '' for synchronous calls. The rows are converted by this
-- migration's hook (`work_from_xml` in sqlite/mod.rs): no SQL can parse the XML.
SELECT 1;
