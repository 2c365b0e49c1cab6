//! The HaaS API end to end: `nhn serve` driven by Python's stock `xmlrpc.client` (the scripts
//! in `tests/api/`), with a Python facility stub answering dispatched requests.

mod support;

use std::time::Duration;

use support::api::{Appliance, Options};

#[test]
fn conformance_suite_passes_with_python_xmlrpc_client() {
    let app = Appliance::start(Options::default());
    app.python_ok("conformance.py", &[]);
    // Read calls are recorded in batches; they reach the table within moments.
    let flushed = support::wait_until(Duration::from_secs(5), Duration::from_millis(50), || {
        app.db()
            .query_row(
                "SELECT COUNT(*) FROM requests WHERE method = 'getImageList' AND status = 'succeeded'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .is_ok_and(|n| n >= 1)
    });
    assert!(flushed, "read calls never reached the requests table");
    // Every key that authenticated a call has its last use stamped; `nhn key list` shows it.
    let kid = app.keys["acme_full"].split(':').next().unwrap().to_owned();
    let stamped = support::wait_until(Duration::from_secs(5), Duration::from_millis(50), || {
        app.db()
            .query_row(
                "SELECT last_used_at FROM api_keys WHERE id = ?1",
                [&kid],
                |r| r.get::<_, Option<String>>(0),
            )
            .is_ok_and(|at| at.is_some_and(|at| at.ends_with('Z')))
    });
    assert!(stamped, "lastUsedAt of {kid} was never stamped");
    // powerOnVm placed VMs on hypervisors; a stopped VM holds none.
    let (placed, stopped_with_host): (i64, i64) = app
        .db()
        .query_row(
            "SELECT (SELECT COUNT(*) FROM vms WHERE state = 'running' AND hypervisor_id IS NOT NULL),
                    (SELECT COUNT(*) FROM vms WHERE state = 'stopped' AND hypervisor_id IS NOT NULL)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        stopped_with_host, 0,
        "a stopped VM kept its hypervisor slot"
    );
    let running: i64 = app
        .db()
        .query_row(
            "SELECT COUNT(*) FROM vms WHERE state = 'running'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(placed, running, "every running VM has a hypervisor");
}

fn keys_of(app: &Appliance) -> Vec<String> {
    let mut secrets: Vec<String> = app
        .keys
        .values()
        .map(|k| {
            k.split_once(':')
                .map(|(_, s)| s.to_owned())
                .unwrap_or_default()
        })
        .collect();
    secrets.push(support::api::FACILITY_SECRET.to_owned());
    // conformance.py's plaintext guest password (setPassword's `password`).
    secrets.push("nhn-Plaintext-Marker-42".to_owned());
    secrets
}

#[test]
fn secrets_never_reach_the_log_the_audit_or_the_requests() {
    let app = Appliance::start(Options::default());
    app.python_ok(
        "conformance.py",
        &[
            "authentication_failures_are_fault_100",
            "scopes_limit_what_a_key_may_call",
            "a_plaintext_password_is_hashed_before_anything_stores_it",
        ],
    );
    app.python_ok(
        "scenarios.py",
        &["the_internal_listener_takes_only_the_facility_credential"],
    );
    let log = app.log();
    let db = app.db();
    let stored: String = db
        .query_row(
            "SELECT group_concat(actor || action || object || result || detail, ' ') FROM audit",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let requests: String = db
        .query_row(
            "SELECT group_concat(COALESCE(key_id, '') || args || COALESCE(response, '') || error_message, ' ') FROM requests",
            [],
            |r| r.get(0),
        )
        .unwrap();
    for secret in keys_of(&app) {
        assert!(!log.contains(&secret), "a secret is in the serve log");
        assert!(!stored.contains(&secret), "a secret is in the audit trail");
        assert!(
            !requests.contains(&secret),
            "a secret is in the requests table"
        );
    }
    assert!(log.contains("authentication failed"), "{log}");
}

#[test]
fn rate_limits_and_failed_auth_throttling() {
    let app = Appliance::start(Options {
        api_config:
            "read_per_second = 1\nread_burst = 3\nmutating_per_second = 1\nmutating_burst = 2\n\
                     auth_failures_burst = 3\nauth_failures_per_minute = 1\n"
                .into(),
        ..Options::default()
    });
    app.python_ok("limits.py", &[]);
}

#[test]
fn bad_input_gets_faults_and_memory_stays_bounded() {
    let app = Appliance::start(Options::default());
    app.python_ok("badinput.py", &[]);
}

#[test]
fn the_internal_listener_checks_the_credential_and_ignores_repeats() {
    let app = Appliance::start(Options::default());
    app.python_ok(
        "scenarios.py",
        &["the_internal_listener_takes_only_the_facility_credential"],
    );
}

#[test]
fn a_lost_callback_times_out_and_the_vm_goes_to_error() {
    let app = Appliance::start(Options {
        api_config: format!("{}init_deadline_secs = 1\n", Options::default().api_config),
        ..Options::default()
    });
    app.python_ok(
        "scenarios.py",
        &["a_lost_callback_times_out_and_leaves_the_vm_in_error"],
    );
}

#[test]
fn a_facility_outage_delays_dispatch_and_a_bad_signature_fails_it() {
    let mut app = Appliance::start(Options::default());
    let state = app.nhn.dir().join("outage.json");
    let state = state.to_str().unwrap().to_owned();
    let run = |app: &Appliance, check: &str| {
        let out = app.python_env("scenarios.py", &[check], &[("NHN_SCENARIO_STATE", &state)]);
        assert!(out.contains(&format!("ok    {check}")), "{out}");
    };
    run(&app, "prepare_a_vm_while_the_facility_is_up");
    app.stop_facility();
    run(&app, "power_on_while_the_facility_is_down_stays_running");
    app.restart_facility(0.05);
    run(&app, "the_power_on_completes_once_the_facility_is_back");
    assert!(
        app.log().contains("dispatch will be retried"),
        "{}",
        app.log()
    );
    assert!(!app.facility_log().contains("refused an unsigned"));

    let app = Appliance::start(Options {
        wrong_facility_credential: true,
        ..Options::default()
    });
    run(
        &app,
        "a_facility_that_refuses_the_signature_fails_the_request_at_once",
    );
    assert!(
        app.facility_log()
            .contains("refused an unsigned or badly signed call")
    );
}

#[test]
fn power_on_is_refused_when_no_hypervisor_has_room_and_names_no_host() {
    let seed = std::fs::read_to_string(support::cli::examples().join("seed-site.toml")).unwrap();
    let site = seed
        .replace("vcpus = 32\n", "vcpus = 12\n")
        .replace("vcpu = 16\n", "vcpu = 64\n");
    let app = Appliance::start(Options {
        site: Some(site),
        ..Options::default()
    });
    app.python_ok(
        "scenarios.py",
        &["power_on_refuses_when_no_hypervisor_has_room"],
    );
    let log = app.log();
    assert!(
        log.contains("powerOnVm: no hypervisor can take the VM"),
        "the operator's log must say why: {log}"
    );
}

#[test]
fn kill_9_with_requests_queued_and_running_loses_nothing() {
    let mut app = Appliance::start(Options {
        api_config: format!("{}max_in_flight = 2\n", Options::default().api_config),
        facility_delay: Some(1.5),
        ..Options::default()
    });
    let state = app.nhn.dir().join("scenario.json");
    let state = state.to_str().unwrap().to_owned();
    let run = |app: &Appliance, check: &str| {
        let out = app.python_env("scenarios.py", &[check], &[("NHN_SCENARIO_STATE", &state)]);
        assert!(out.contains(&format!("ok    {check}")), "{out}");
    };
    run(&app, "queue_power_ons_before_a_crash");
    app.kill9();
    let (queued, running): (i64, i64) = app
        .db()
        .query_row(
            "SELECT (SELECT COUNT(*) FROM requests WHERE method = 'powerOnVm' AND status = 'queued'),
                    (SELECT COUNT(*) FROM requests WHERE method = 'powerOnVm' AND status = 'running')",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    println!("at kill -9: {queued} queued, {running} running");
    assert!(
        queued >= 1 && running >= 1,
        "{queued} queued, {running} running"
    );
    app.start_serve();
    run(&app, "every_request_completes_once_after_the_restart");
    let applied: i64 = app
        .db()
        .query_row(
            "SELECT COUNT(*) FROM audit WHERE action = 'powerOnVm.result'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(applied, 6, "each power-on must be applied exactly once");
}

#[test]
fn fairness_one_request_of_b_is_not_stuck_behind_200_of_a() {
    let seed = std::fs::read_to_string(support::cli::examples().join("seed-site.toml")).unwrap();
    let site = seed
        .replace("vcpus = 32\n", "vcpus = 512\n")
        .replace("memory_mb = 131072\n", "memory_mb = 1048576\n")
        .replace(
            "[[customers]]\nname = \"acme\"\n",
            "[[customers]]\nname = \"acme\"\n\n[customers.quota]\nvms = 250\nvcpu = 250\nmemory_mb = 1000000\n\
             volumes = 250\nvolume_gb = 10000\nnetworks_l2ex = 1\nnetworks_l3ex = 1\nnetworks_l3sh = 1\n\
             l3sh_addresses = 1\npending_requests = 250\n",
        );
    let delay = 0.1;
    let app = Appliance::start(Options {
        api_config: format!("{}max_queued = 250\n", Options::default().api_config),
        site: Some(site),
        facility_delay: Some(delay),
        ..Options::default()
    });
    let out = app.python_env(
        "scenarios.py",
        &["one_customers_single_request_is_not_stuck_behind_anothers_200"],
        &[("NHN_FACILITY_DELAY", &delay.to_string())],
    );
    assert!(
        out.contains("1 passed, 0 failed") || out.contains("ok    one_customers"),
        "{out}"
    );
}

#[test]
fn a_key_revoked_from_the_cli_stops_working_while_serving() {
    let app = Appliance::start(Options::default());
    let id = app.keys["acme_operate"]
        .split(':')
        .next()
        .unwrap()
        .to_owned();
    app.python_ok("conformance.py", &["scopes_limit_what_a_key_may_call"]);
    app.nhn.ok(&["key", "revoke", &id]);
    app.python_ok("scenarios.py", &["a_revoked_key_is_refused"]);
}
