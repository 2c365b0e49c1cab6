//! The HaaS API end to end: `nhn serve` driven by Python's stock `xmlrpc.client` (the scripts
//! in `tests/api/`), with a Python facility stub answering dispatched requests.

mod support;

use support::api::{Appliance, Options};

#[test]
fn conformance_suite_passes_with_python_xmlrpc_client() {
    let app = Appliance::start(Options::default());
    app.python_ok("conformance.py", &[]);
}
