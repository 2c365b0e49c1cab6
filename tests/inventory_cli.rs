//! The inventory through the `nhn` command line, as an operator uses it: site import (idempotent,
//! transactional, with located errors), export round trips, `inventory show`, and the schema
//! guard against databases from a newer nhn.

mod support;

use support::cli::{Nhn, examples};

#[test]
fn seed_site_import_shows_topology_and_is_idempotent() {
    let nhn = Nhn::new();
    let seed = examples().join("seed-site.toml");
    let first = nhn.ok(&["inventory", "import", seed.to_str().unwrap()]);
    assert!(first.contains("+ switch Edge-Switch-3"), "{first}");
    assert!(
        first.contains("+ link Edge-Switch-1:swp1 <-> Core-Switch-A:swp1"),
        "{first}"
    );

    let show = nhn.ok(&["inventory", "show"]);
    assert!(
        show.contains("5 switches (2 core, 3 edge), 7 links, 3 machines (3 hypervisors"),
        "{show}"
    );
    for name in [
        "Core-Switch-A",
        "Core-Switch-B",
        "Edge-Switch-1",
        "Edge-Switch-2",
        "Edge-Switch-3",
    ] {
        assert!(show.contains(name), "{name} missing from:\n{show}");
    }
    assert!(
        show.contains("Edge-Switch-2:swp2 <-> Core-Switch-B:swp2"),
        "{show}"
    );
    assert!(
        show.contains("eth0 52:54:00:00:01:03 10.20.0.13 -> Edge-Switch-3:swp3"),
        "{show}"
    );

    let events_before = nhn.events();
    let second = nhn.ok(&["inventory", "import", seed.to_str().unwrap()]);
    assert!(second.starts_with("no change"), "{second}");
    assert_eq!(nhn.events(), events_before, "a no-op import must not write");
}

#[test]
fn export_then_import_into_a_fresh_data_dir_gives_an_identical_export() {
    let a = Nhn::new();
    a.ok(&[
        "inventory",
        "import",
        examples().join("seed-site.toml").to_str().unwrap(),
    ]);
    let exported = a.dir().join("export.toml");
    a.ok(&["inventory", "export", "--out", exported.to_str().unwrap()]);

    let b = Nhn::new();
    b.ok(&["inventory", "import", exported.to_str().unwrap()]);
    let again = b.ok(&["inventory", "export"]);
    assert_eq!(std::fs::read_to_string(&exported).unwrap(), again);
    // And the export describes the same world as the hand-written file.
    let reimport = a.ok(&["inventory", "import", exported.to_str().unwrap()]);
    assert!(reimport.starts_with("no change"), "{reimport}");
}

#[test]
fn changed_site_reports_what_changed_and_only_that() {
    let nhn = Nhn::new();
    let small = support::cli::data().join("small-site.toml");
    nhn.ok(&["inventory", "import", small.to_str().unwrap()]);
    let edited = nhn.dir().join("edited.toml");
    let text = std::fs::read_to_string(&small)
        .unwrap()
        .replace("vcpus = 32", "vcpus = 48");
    std::fs::write(&edited, text).unwrap();
    let out = nhn.ok(&["inventory", "import", edited.to_str().unwrap()]);
    assert!(out.contains("0 created, 1 updated"), "{out}");
    assert!(out.contains("~ machine Hypervisor-1"), "{out}");
    assert!(nhn.ok(&["inventory", "show"]).contains("48 vCPU"));
}

/// Each broken file: the expected message, and the line it must point at.
const BROKEN: &[(&str, &str, &str)] = &[
    (
        "syntax-error.toml",
        "invalid basic string",
        "syntax-error.toml:26:",
    ),
    (
        "unknown-key.toml",
        "unknown field `colour`",
        "unknown-key.toml:23:",
    ),
    (
        "duplicate-mac.toml",
        "duplicate MAC 52:54:00:00:01:01",
        "duplicate-mac.toml:57:",
    ),
    (
        "dangling-link.toml",
        "unknown switch \"Edge-Switch-9\"",
        "dangling-link.toml:51:",
    ),
    (
        "unknown-port.toml",
        "switch \"Core-Switch-A\" has no port \"swp7\"",
        "unknown-port.toml:51:",
    ),
    (
        "port-linked-twice.toml",
        "port Core-Switch-A:swp1 is already used by link",
        "port-linked-twice.toml:51:",
    ),
    (
        "overlapping-pools.toml",
        "203.0.113.128/25 overlaps IP pool \"shared\"",
        "overlapping-pools.toml:57:",
    ),
    (
        "overlapping-vlan-pools.toml",
        "range 900-1100 overlaps VLAN pool \"customer\"",
        "overlapping-vlan-pools.toml:51:",
    ),
    (
        "duplicate-switch.toml",
        "switch \"Core-Switch-A\": duplicate name (first defined on line 16)",
        "duplicate-switch.toml:51:",
    ),
    (
        "vlan-in-pool.toml",
        "VLAN 150 lies inside VLAN pool \"customer\"",
        "vlan-in-pool.toml:9:",
    ),
    (
        "ip-outside-subnet.toml",
        "address 10.21.0.11 is outside network \"service\"",
        "ip-outside-subnet.toml:44:",
    ),
    (
        "bad-mac.toml",
        "invalid MAC address \"52:54:00:00:01\"",
        "bad-mac.toml:46:",
    ),
    (
        "nic-on-core.toml",
        "Core-Switch-A:swp2 is on a core switch",
        "nic-on-core.toml:44:",
    ),
];

#[test]
fn broken_site_files_fail_with_located_messages_and_change_nothing() {
    let nhn = Nhn::new();
    nhn.ok(&[
        "inventory",
        "import",
        support::cli::data()
            .join("small-site.toml")
            .to_str()
            .unwrap(),
    ]);
    let export_before = nhn.ok(&["inventory", "export"]);
    let events_before = nhn.events();
    let broken_dir = support::cli::data().join("broken");
    let on_disk = std::fs::read_dir(&broken_dir).unwrap().count();
    assert_eq!(
        on_disk,
        BROKEN.len(),
        "every file in {} needs an expectation",
        broken_dir.display()
    );
    for (file, message, location) in BROKEN {
        let path = broken_dir.join(file);
        let err = nhn.fails(&["inventory", "import", path.to_str().unwrap()]);
        assert!(
            err.contains(message),
            "{file}: expected {message:?} in:\n{err}"
        );
        assert!(
            err.contains(location),
            "{file}: expected location {location:?} in:\n{err}"
        );
        assert!(err.contains("nothing was imported"), "{file}: {err}");
        assert_eq!(nhn.events(), events_before, "{file} changed the database");
    }
    assert_eq!(nhn.ok(&["inventory", "export"]), export_before);
}

#[test]
fn a_file_for_another_site_is_refused() {
    let nhn = Nhn::new();
    nhn.ok(&[
        "inventory",
        "import",
        examples().join("seed-site.toml").to_str().unwrap(),
    ]);
    let err = nhn.fails(&[
        "inventory",
        "import",
        support::cli::data()
            .join("small-site.toml")
            .to_str()
            .unwrap(),
    ]);
    assert!(
        err.contains("this inventory describes site \"seed\""),
        "{err}"
    );
}

#[test]
fn database_from_a_newer_schema_is_refused_with_a_clear_message() {
    let nhn = Nhn::new();
    nhn.ok(&["inventory", "show"]);
    let db = rusqlite::Connection::open(nhn.dir().join("nhn.db")).unwrap();
    db.pragma_update(None, "user_version", 99).unwrap();
    drop(db);
    let err = nhn.fails(&["inventory", "show"]);
    assert!(err.contains("schema version 99"), "{err}");
    assert!(err.contains("written by a newer nhn"), "{err}");
}

#[test]
fn config_with_an_unknown_key_names_file_line_and_column() {
    let nhn = Nhn::new();
    let cfg = nhn.dir().join("nhn.toml");
    std::fs::write(
        &cfg,
        "[http]\nlisten = \"127.0.0.1:9\"\n\n[htpp]\nlisten = \"0.0.0.0:80\"\n",
    )
    .unwrap();
    let err = nhn.fails(&["--config", cfg.to_str().unwrap(), "config", "show"]);
    assert!(
        err.contains(&format!("{}:4:2: unknown field `htpp`", cfg.display())),
        "{err}"
    );
}

#[test]
fn config_show_prints_the_embedded_defaults() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nhn"))
        .args(["config", "show"])
        .env_remove("NHN_CONFIG")
        .env_remove("NHN_DATA_DIR")
        .output()
        .unwrap();
    assert!(out.status.success());
    let out = String::from_utf8(out.stdout).unwrap();
    assert!(out.contains("listen = \"127.0.0.1:8080\""), "{out}");
    assert!(out.contains("data_dir = \"./nhn-data\""), "{out}");
}

#[test]
fn reimport_keeps_a_pinned_switch_host_key_the_file_does_not_mention() {
    let nhn = Nhn::new();
    let seed = examples().join("seed-site.toml");
    nhn.ok(&["inventory", "import", seed.to_str().unwrap()]);
    // As trust-on-first-use stores it.
    nhn.db()
        .execute(
            "UPDATE switches SET host_key = 'SHA256:learned' WHERE name = 'Edge-Switch-1'",
            [],
        )
        .unwrap();
    let again = nhn.ok(&["inventory", "import", seed.to_str().unwrap()]);
    assert!(again.starts_with("no change"), "{again}");
    let key: String = nhn
        .db()
        .query_row(
            "SELECT host_key FROM switches WHERE name = 'Edge-Switch-1'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(key, "SHA256:learned");
}
