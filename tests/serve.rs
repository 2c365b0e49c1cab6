//! `nhn serve` as a process: reachable across a real network (network namespaces), one
//! appliance per data dir, clean shutdown on SIGTERM, and a lock the kernel frees on kill -9.

mod support;

use std::time::{Duration, Instant};

use support::cli::{Nhn, Serving, examples};
use support::{lab_or_skip, wait_until};

#[test]
fn serve_in_a_namespace_answers_another_namespace_and_stops_on_sigterm() {
    let Some(lab) = lab_or_skip(
        "serve_in_a_namespace_answers_another_namespace_and_stops_on_sigterm",
        &["curl"],
    ) else {
        return;
    };
    let nhn = Nhn::new();
    nhn.ok(&[
        "inventory",
        "import",
        examples().join("seed-site.toml").to_str().unwrap(),
    ]);

    let appliance = lab.netns("appliance");
    let client = lab.netns("client");
    lab.veth((&appliance, "eth0"), (&client, "eth0"));
    appliance.addr("eth0", "10.77.0.1/24");
    client.addr("eth0", "10.77.0.2/24");

    let mut serve = appliance.cmd(env!("CARGO_BIN_EXE_nhn"));
    serve.arg("--data-dir").arg(nhn.dir()).args([
        "serve",
        "--listen",
        "10.77.0.1:8080",
        "--internal-listen",
        "127.0.0.1:0",
    ]);
    let proc = lab.spawn("nhn-serve", serve);

    let curl = |path: &str| {
        client.try_run(&[
            "curl",
            "-sf",
            "--max-time",
            "2",
            &format!("http://10.77.0.1:8080{path}"),
        ])
    };
    let up = wait_until(Duration::from_secs(20), Duration::from_millis(100), || {
        let out = curl("/healthz");
        out.status.success() && String::from_utf8_lossy(&out.stdout) == "ok\n"
    });
    assert!(
        up,
        "nhn serve did not answer /healthz from the client namespace; log:\n{}",
        proc.log()
    );

    let metrics = String::from_utf8(curl("/metrics").stdout).unwrap();
    assert!(metrics.contains("nhn_build_info{version=\""), "{metrics}");
    assert!(
        metrics.contains("nhn_inventory_objects{kind=\"switches\"} 5"),
        "{metrics}"
    );
    assert!(
        metrics.contains("nhn_inventory_objects{kind=\"hypervisors\"} 3"),
        "{metrics}"
    );
    let page = String::from_utf8(curl("/").stdout).unwrap();
    assert!(
        page.contains("nhn — site seed") && page.contains("Edge-Switch-3"),
        "{page}"
    );

    let asked = Instant::now();
    proc.terminate();
    let status = proc.wait_timeout(Duration::from_secs(2));
    let took = asked.elapsed();
    assert!(
        status.is_some(),
        "nhn serve still running 2 s after SIGTERM; log:\n{}",
        proc.log()
    );
    assert!(
        status.unwrap().success(),
        "nhn serve exited with {status:?}; log:\n{}",
        proc.log()
    );
    assert!(
        proc.log().contains("SIGTERM: shutting down"),
        "{}",
        proc.log()
    );
    eprintln!("SIGTERM to exit: {took:?}");
}

/// Starts `nhn serve` on loopback with an ephemeral port; waits until it holds the data dir.
fn start_serve(nhn: &Nhn) -> Serving {
    nhn.serve_on_loopback(&[])
}

#[test]
fn a_second_serve_on_the_same_data_dir_fails_clearly() {
    let nhn = Nhn::new();
    let mut first = start_serve(&nhn);
    let err = nhn.fails(&["serve", "--listen", "127.0.0.1:0"]);
    assert!(
        err.contains(&format!(
            "another `nhn serve` (pid {}) is already running on data dir",
            first.0.id()
        )),
        "{err}"
    );
    // The first one is unharmed and still stops cleanly.
    assert!(
        first.0.try_wait().unwrap().is_none(),
        "the first nhn serve died"
    );
    let (status, log) = first.terminate_with_log();
    assert!(status.success(), "{status}:\n{log}");
}

#[test]
fn the_data_dir_lock_is_released_by_kill_9() {
    let nhn = Nhn::new();
    let first = start_serve(&nhn);
    drop(first); // SIGKILL and reap
    let second = start_serve(&nhn);
    let (status, log) = second.terminate_with_log();
    assert!(status.success(), "{status}:\n{log}");
}
