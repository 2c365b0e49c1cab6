//! The customer-facing HaaS API (HAAS-API.md). So far: API keys, the credential every call
//! carries. The XML-RPC methods, fairness and the request engine build on this module.

pub mod keys;
