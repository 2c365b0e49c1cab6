//! The method bodies against an in-memory store (`inventory::Memory`): the seed site imported,
//! its two customers calling through the method table the way `rpc` runs them (argument
//! members checked, a write inside `requests::run_write` with its request row). Tables of
//! cases: what each method refuses and why, what another customer may never see, and the
//! allocate → attach → inspect paths with the state rules between them. The wire (XML, auth,
//! rate limits) is tested end to end in tests/api/ with Python's xmlrpc.client.

use std::sync::Arc;

use dxr::Value;

use super::args::{Args, Struct, s, st};
use super::auth::Caller;
use super::calllog::CallLog;
use super::fault::{ApiError, ErrorType};
use super::keys::Scope;
use super::{Body, Ctx, method, requests};
use crate::config;
use crate::inventory::keys::Keys;
use crate::inventory::requests::Requests;
use crate::inventory::{Memory, site};
use crate::switch::vlans::VlanSet;

struct Fixture {
    mem: Memory,
    acme: i64,
    globex: i64,
}

fn int(v: i64) -> Value {
    Value::Integer(v as i32)
}

impl Fixture {
    fn new() -> Fixture {
        let mem = site::seeded();
        let (acme, globex) = {
            let tx = mem.tx();
            let id = |name| tx.customer_id(name).unwrap().expect("customer");
            (id("acme"), id("globex"))
        };
        Fixture { mem, acme, globex }
    }

    /// `method(args)` as customer `customer` would call it.
    fn call(&self, customer: i64, name: &str, args: Struct) -> Result<Struct, ApiError> {
        let m = method(name).unwrap_or_else(|| panic!("no method {name}"));
        let mut args = Args::parse(name, Some(Value::Struct(args)), m.members)?;
        let ctx = Ctx {
            caller: Caller {
                customer_id: customer,
                key_id: "key-test".into(),
                scope: Scope::Full,
            },
            request_id: crate::jobs::new_request_id(),
            config: Arc::new(config::Api::default()),
            call_log: Arc::new(CallLog::default()),
            infra_vlans: Arc::new(VlanSet::new()),
            secret: [7; 32],
        };
        if let Some(prepare) = m.prepare {
            prepare(&mut args, &ctx)?;
        }
        let tx = self.mem.tx();
        match m.body {
            Body::Read(f) => f(&tx, &ctx, &args),
            Body::Write(f) => {
                requests::run_write(&tx, m, &ctx, &args, f).expect("the database answers")
            }
        }
    }

    fn ok(&self, customer: i64, name: &str, args: Struct) -> Struct {
        self.call(customer, name, args)
            .unwrap_or_else(|e| panic!("{name} failed: {e}"))
    }

    fn id(&self, customer: i64, name: &str, args: Struct, member: &str) -> String {
        crate::codec::text(&self.ok(customer, name, args), member)
    }

    /// A stopped VM of `customer` with a 30 GB DISK1 and a network on NET1: `(vm, volume,
    /// network)`.
    fn assembled(&self, customer: i64, kind: &str) -> (String, String, String) {
        let vm = self.id(customer, "allocateVm", st([("vmType", s("V10"))]), "vmId");
        let vol = self.id(
            customer,
            "allocateVolume",
            st([("sizeGB", int(30))]),
            "volumeId",
        );
        self.ok(
            customer,
            "attachVolume",
            st([
                ("vmId", s(&vm)),
                ("volumeId", s(&vol)),
                ("device", s("DISK1")),
            ]),
        );
        let net = self.id(
            customer,
            "allocateNetwork",
            st([("networkType", s(kind))]),
            "networkId",
        );
        self.ok(
            customer,
            "attachNetwork",
            st([
                ("vmId", s(&vm)),
                ("networkId", s(&net)),
                ("device", s("NET1")),
            ]),
        );
        (vm, vol, net)
    }
}

fn member<'a>(v: &'a Struct, path: &[&str]) -> &'a Value {
    let mut at = v
        .get(path[0])
        .unwrap_or_else(|| panic!("no {} in {v:?}", path[0]));
    for key in &path[1..] {
        let Value::Struct(m) = at else {
            panic!("{key}: not a struct")
        };
        at = m.get(*key).unwrap_or_else(|| panic!("no {key} in {m:?}"));
    }
    at
}

fn len(v: &Value) -> usize {
    match v {
        Value::Array(a) => a.len(),
        other => panic!("not an array: {other:?}"),
    }
}

#[test]
fn wrong_arguments_are_refused_with_the_contracts_error_and_change_nothing() {
    let f = Fixture::new();
    let (vm, vol, _) = f.assembled(f.acme, "L2EX");
    let cases: Vec<(&str, Struct, ErrorType, &str)> = vec![
        (
            "allocateVm",
            st([("vmType", s("V7"))]),
            ErrorType::ParameterError,
            "the types are V10, V20, V40, V80, V160",
        ),
        (
            "allocateVm",
            st([("vmType", s("V10")), ("architecture", s("arm64"))]),
            ErrorType::ParameterError,
            "use \"x86_64\" or \"i386\"",
        ),
        (
            "allocateVm",
            st([("vmType", s("V10")), ("comment", s("x".repeat(256)))]),
            ErrorType::ParameterError,
            "longer than 255",
        ),
        ("allocateVm", st([]), ErrorType::InvalidParams, "vmType"),
        (
            "allocateVm",
            st([("vmType", s("V10")), ("color", s("red"))]),
            ErrorType::InvalidParams,
            "color",
        ),
        (
            "allocateVolume",
            st([("sizeGB", int(50))]),
            ErrorType::ParameterError,
            "use 30, 100 or 300",
        ),
        (
            "allocateNetwork",
            st([("networkType", s("infra"))]),
            ErrorType::ParameterError,
            "use L2EX, L3EX or L3SH",
        ),
        (
            "allocateNetwork",
            st([("networkType", s("L2EX")), ("prefixLength", int(28))]),
            ErrorType::ParameterError,
            "L3EX networks only",
        ),
        (
            "getVmList",
            st([("state", s("paused"))]),
            ErrorType::ParameterError,
            "use one of stopped, starting",
        ),
        (
            "getVmList",
            st([("limit", int(0))]),
            ErrorType::InvalidParams,
            "between 1 and 1000",
        ),
        (
            "getNetworkList",
            st([("networkType", s("L4"))]),
            ErrorType::ParameterError,
            "use L2EX",
        ),
        (
            "attachVolume",
            st([
                ("vmId", s(&vm)),
                ("volumeId", s(&vol)),
                ("device", s("DISK3")),
            ]),
            ErrorType::ParameterError,
            "use \"DISK1\" or \"DISK2\"",
        ),
        (
            "attachNetwork",
            st([
                ("vmId", s(&vm)),
                ("networkId", s("net-x")),
                ("device", s("NET1")),
            ]),
            ErrorType::NotFound,
            "network net-x",
        ),
        (
            "powerOffVm",
            st([("vmId", s(&vm))]),
            ErrorType::InvalidStatus,
            "needs it running",
        ),
        (
            "powerOnVm",
            st([("vmId", s(&vm))]),
            ErrorType::InvalidStatus,
            "DISK1 has no image",
        ),
        (
            "restoreImage",
            st([("vmId", s(&vm)), ("imageId", s("img-none"))]),
            ErrorType::NotFound,
            "getImageList",
        ),
        (
            "deallocateVolume",
            st([("volumeId", s(&vol))]),
            ErrorType::InvalidStatus,
            "detachVolume it first",
        ),
        (
            "setResourceComment",
            st([("resourceId", s("img-1")), ("comment", s("x"))]),
            ErrorType::NotFound,
            "vm-, net- and vol-",
        ),
    ];
    let before = crate::inventory::queries::counts(&f.mem.tx()).unwrap();
    for (name, args, kind, says) in cases {
        let err = f
            .call(f.acme, name, args.clone())
            .expect_err(&format!("{name}({args:?}) succeeded"));
        assert_eq!(err.kind, kind, "{name}({args:?}): {err}");
        assert!(err.message.contains(says), "{name}({args:?}): {err}");
    }
    assert_eq!(
        crate::inventory::queries::counts(&f.mem.tx()).unwrap(),
        before
    );
}

#[test]
fn another_customers_resources_do_not_exist() {
    let f = Fixture::new();
    let (vm, vol, net) = f.assembled(f.acme, "L3SH");
    let ip = match member(
        &f.ok(f.acme, "allocateIpAddress", st([("networkId", s(&net))])),
        &["ipAddresses"],
    ) {
        Value::Array(a) => match &a[0] {
            Value::String(ip) => ip.clone(),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    };
    let v = || ("vmId", s(&vm));
    let cases: Vec<(&str, Struct)> = vec![
        ("getVmInfo", st([v()])),
        ("getVmStatus", st([v()])),
        ("deallocateVm", st([v()])),
        ("powerOnVm", st([v()])),
        ("changeVmType", st([v(), ("vmType", s("V20"))])),
        ("getVolumeInfo", st([("volumeId", s(&vol))])),
        ("deallocateVolume", st([("volumeId", s(&vol))])),
        ("detachVolume", st([v(), ("device", s("DISK1"))])),
        ("getNetworkInfo", st([("networkId", s(&net))])),
        ("deallocateNetwork", st([("networkId", s(&net))])),
        (
            "deallocateIpAddress",
            st([("networkId", s(&net)), ("ipAddress", s(&ip))]),
        ),
        ("detachNetwork", st([v(), ("device", s("NET1"))])),
        ("getResourceComment", st([("resourceId", s(&vm))])),
        (
            "setResourceComment",
            st([("resourceId", s(&net)), ("comment", s("mine"))]),
        ),
    ];
    for (name, args) in cases {
        let err = f
            .call(f.globex, name, args.clone())
            .expect_err(&format!("globex's {name}({args:?}) succeeded"));
        assert_eq!(err.kind, ErrorType::NotFound, "{name}: {err}");
    }
    for (list, member_name) in [
        ("getVmList", "vmList"),
        ("getVolumeList", "volumeList"),
        ("getNetworkList", "networkList"),
    ] {
        let out = f.ok(f.globex, list, st([]));
        assert_eq!(out.get("totalCount"), Some(&int(0)), "{list}");
        assert_eq!(len(member(&out, &[member_name])), 0, "{list}");
    }
}

#[test]
fn assembling_a_vm_shows_in_its_info_and_the_rules_between_the_steps_hold() {
    let f = Fixture::new();
    let (vm, vol, net) = f.assembled(f.acme, "L3SH");
    let ip = f.ok(
        f.acme,
        "allocateIpAddress",
        st([("networkId", s(&net)), ("ipAddress", s("203.0.113.20"))]),
    );
    assert_eq!(
        member(&ip, &["ipAddresses"]),
        &Value::Array(vec![s("203.0.113.20")])
    );
    f.ok(
        f.acme,
        "assignIpAddress",
        st([
            ("vmId", s(&vm)),
            ("device", s("NET1")),
            ("ipAddress", s("203.0.113.20")),
        ]),
    );
    let info = f.ok(f.acme, "getVmInfo", st([("vmId", s(&vm))]));
    assert_eq!(member(&info, &["vm", "state"]), &s("stopped"));
    assert_eq!(member(&info, &["vm", "power"]), &s("off"));
    assert_eq!(member(&info, &["vm", "cpu"]), &int(1));
    let Value::Array(disks) = member(&info, &["vm", "disks"]) else {
        panic!("disks")
    };
    assert_eq!(
        disks,
        &[Value::Struct(st([
            ("device", s("DISK1")),
            ("volumeId", s(&vol)),
            ("sizeGB", int(30)),
        ]))]
    );
    let Value::Array(nics) = member(&info, &["vm", "nics"]) else {
        panic!("nics")
    };
    let Value::Struct(nic) = &nics[0] else {
        panic!("nic")
    };
    assert_eq!(nic.get("networkType"), Some(&s("L3SH")));
    assert_eq!(
        nic.get("ipAddresses"),
        Some(&Value::Array(vec![s("203.0.113.20")]))
    );
    // The same address again, a second network on NET1, the volume elsewhere: refused.
    let refused: Vec<(&str, Struct, ErrorType)> = vec![
        (
            "allocateIpAddress",
            st([("networkId", s(&net)), ("ipAddress", s("203.0.113.20"))]),
            ErrorType::Conflict,
        ),
        (
            "allocateIpAddress",
            st([("networkId", s(&net)), ("ipAddress", s("203.0.113.1"))]),
            ErrorType::ParameterError,
        ),
        (
            "deallocateIpAddress",
            st([("networkId", s(&net)), ("ipAddress", s("203.0.113.20"))]),
            ErrorType::InvalidStatus,
        ),
        (
            "deallocateNetwork",
            st([("networkId", s(&net))]),
            ErrorType::InvalidStatus,
        ),
        (
            "attachNetwork",
            st([
                ("vmId", s(&vm)),
                ("networkId", s(&net)),
                ("device", s("NET2")),
            ]),
            ErrorType::Conflict,
        ),
    ];
    for (name, args, kind) in refused {
        let err = f.call(f.acme, name, args).expect_err(name);
        assert_eq!(err.kind, kind, "{name}: {err}");
    }
    let net_info = f.ok(f.acme, "getNetworkInfo", st([("networkId", s(&net))]));
    assert_eq!(len(member(&net_info, &["network", "attachments"])), 1);
    assert_eq!(len(member(&net_info, &["network", "ipAddresses"])), 1);
    // Taking it apart: the address stays the customer's, unassigned; the volume stays.
    f.ok(
        f.acme,
        "detachNetwork",
        st([("vmId", s(&vm)), ("device", s("NET1"))]),
    );
    f.ok(f.acme, "deallocateVm", st([("vmId", s(&vm))]));
    let vol_info = f.ok(f.acme, "getVolumeInfo", st([("volumeId", s(&vol))]));
    assert_eq!(member(&vol_info, &["volume", "vmId"]), &s(""));
    f.ok(
        f.acme,
        "deallocateIpAddress",
        st([("networkId", s(&net)), ("ipAddress", s("203.0.113.20"))]),
    );
    f.ok(f.acme, "deallocateNetwork", st([("networkId", s(&net))]));
    f.ok(f.acme, "deallocateVolume", st([("volumeId", s(&vol))]));
}

#[test]
fn restore_image_queues_a_request_and_moves_the_vm_to_installing() {
    let f = Fixture::new();
    let (vm, _, _) = f.assembled(f.acme, "L2EX");
    let image = {
        let list = f.ok(f.acme, "getImageList", st([]));
        let Value::Array(images) = member(&list, &["imageList"]) else {
            panic!("imageList")
        };
        let Value::Struct(first) = &images[0] else {
            panic!("image")
        };
        crate::codec::text(first, "imageId")
    };
    let out = f.ok(
        f.acme,
        "restoreImage",
        st([("vmId", s(&vm)), ("imageId", s(&image))]),
    );
    assert_eq!(out.get("previousState"), Some(&s("stopped")));
    assert_eq!(out.get("currentState"), Some(&s("installing")));
    let request = crate::codec::text(&out, "requestId");
    let status = f.ok(f.acme, "getVmStatus", st([("vmId", s(&vm))]));
    assert_eq!(status.get("state"), Some(&s("installing")));
    // Busy while the request is in flight; the request is the caller's alone.
    let err = f
        .call(f.acme, "powerOnVm", st([("vmId", s(&vm))]))
        .expect_err("a second async call");
    assert_eq!(err.kind, ErrorType::ResourceBusy, "{err}");
    let info = f.ok(f.acme, "getRequestIdInfo", st([("requestId", s(&request))]));
    assert_eq!(member(&info, &["request", "status"]), &s("queued"));
    let err = f
        .call(
            f.globex,
            "getRequestIdInfo",
            st([("requestId", s(&request))]),
        )
        .expect_err("another customer's request");
    assert_eq!(err.kind, ErrorType::NotFound);
    // The stored work is typed, not the caller's XML.
    let work = f.mem.tx().pending(&request).unwrap().unwrap().work;
    assert_eq!(work, Some(crate::model::Work::Restore { image }));
}

#[test]
fn quotas_stop_the_call_that_would_pass_them() {
    let f = Fixture::new();
    // globex: 5 VMs, 16 vCPUs; V10 is 1 vCPU.
    for _ in 0..5 {
        f.ok(f.globex, "allocateVm", st([("vmType", s("V10"))]));
    }
    let err = f
        .call(f.globex, "allocateVm", st([("vmType", s("V10"))]))
        .expect_err("a sixth VM");
    assert_eq!(err.kind, ErrorType::QuotaExceeded);
    assert!(err.message.contains("vms: you use 5 of 5"), "{err}");
    // One L3EX network, then none.
    f.ok(
        f.globex,
        "allocateNetwork",
        st([("networkType", s("L3EX"))]),
    );
    let err = f
        .call(
            f.globex,
            "allocateNetwork",
            st([("networkType", s("L3EX"))]),
        )
        .expect_err("a second L3EX network");
    assert_eq!(err.kind, ErrorType::QuotaExceeded);
    assert!(
        err.message.contains("networks.L3EX: you have 1 of 1"),
        "{err}"
    );
    let quota = f.ok(f.globex, "getQuota", st([]));
    assert_eq!(member(&quota, &["usage", "vms"]), &int(5));
    assert_eq!(member(&quota, &["usage", "networks", "L3EX"]), &int(1));
}

#[test]
fn lists_page_with_offset_and_limit_oldest_first() {
    let f = Fixture::new();
    let ids: Vec<String> = (0..4)
        .map(|_| f.id(f.acme, "allocateVm", st([("vmType", s("V10"))]), "vmId"))
        .collect();
    for (offset, limit, want) in [
        (0, 100, &ids[..]),
        (1, 2, &ids[1..3]),
        (3, 5, &ids[3..]),
        (9, 5, &ids[..0]),
    ] {
        let out = f.ok(
            f.acme,
            "getVmList",
            st([("offset", int(offset)), ("limit", int(limit))]),
        );
        assert_eq!(out.get("totalCount"), Some(&int(4)));
        let Value::Array(list) = member(&out, &["vmList"]) else {
            panic!("vmList")
        };
        let got: Vec<String> = list
            .iter()
            .map(|v| match v {
                Value::Struct(m) => crate::codec::text(m, "vmId"),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(got, want, "offset {offset} limit {limit}");
    }
    let stopped = f.ok(f.acme, "getVmList", st([("state", s("running"))]));
    assert_eq!(stopped.get("totalCount"), Some(&int(0)));
}

#[test]
fn imported_images_are_in_the_catalogue_customers_see() {
    use crate::inventory::images::{ImageContent, ImageRecord, Images};
    let f = Fixture::new();
    let image = ImageRecord {
        public_id: "img-deb12".into(),
        name: "deb12".into(),
        os: "Debian".into(),
        os_version: "12".into(),
        architecture: "x86_64".into(),
        min_disk_gb: 30,
        init_supported: true,
        description: "imported".into(),
        created_at: String::new(),
    };
    let content = ImageContent {
        archive: "images/img-deb12/rootfs.tar.zst".into(),
        sha256: "ab".repeat(32),
        kernel_version: "6.1.0-57-amd64".into(),
        archive_bytes: 1 << 20,
        unpacked_bytes: 3 << 20,
        kernel_sha256: "cd".repeat(32),
        initrd_sha256: "ef".repeat(32),
    };
    f.mem.tx().add_image(&image, &content, 0).unwrap();
    assert_eq!(
        f.mem.tx().image_content("img-deb12").unwrap(),
        Some(content.clone())
    );
    let list = f.ok(f.globex, "getImageList", st([]));
    assert_eq!(list.get("totalCount"), Some(&int(2)));
    let info = f.ok(f.globex, "getImageInfo", st([("imageId", s("img-deb12"))]));
    assert_eq!(member(&info, &["image", "os"]), &s("Debian"));
    assert_eq!(member(&info, &["image", "description"]), &s("imported"));
    // A second import of the same name is refused; the first stays.
    assert!(f.mem.tx().add_image(&image, &content, 0).is_err());
}
