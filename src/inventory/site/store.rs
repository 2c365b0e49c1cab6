//! Site file ↔ inventory: [`export`] reads the physical world out of the inventory as a
//! [`SiteFile`]; [`import`] compares a validated file with that export object by object and
//! writes only what differs, inside the caller's transaction (so a failure changes nothing).
//! Both go through the site's repository ([`SiteObjects`], [`SiteStore`]); import walks
//! [`KINDS`], one small step per kind of object.

use std::collections::{BTreeMap, BTreeSet};

use super::repository::{SiteObjects, SiteStore};
use super::*;
use crate::inventory::{Error, Result, Tx, record_event};
use crate::model::EventKind;
use crate::util::unix_now;

/// The string form of a unit enum, as it appears in site files and in the database.
pub fn enum_str<T: serde::Serialize>(v: &T) -> String {
    match toml::Value::try_from(v) {
        Ok(toml::Value::String(s)) => s,
        _ => String::new(),
    }
}

/// Every object of one kind, as a site file lists them.
fn all<'t, T>(tx: &Tx<'t>) -> Result<Vec<At<T>>>
where
    Tx<'t>: SiteObjects<T>,
{
    Ok(tx.all()?.into_iter().map(At::new).collect())
}

/// Reads the physical world out of the inventory, canonically ordered.
pub fn export(tx: &Tx<'_>) -> Result<SiteFile> {
    Ok(SiteFile {
        site: tx.site_info()?.unwrap_or_default(),
        iscsi_portals: all(tx)?,
        vlan_pools: all(tx)?,
        networks: all(tx)?,
        ip_pools: all(tx)?,
        switches: all(tx)?,
        links: all(tx)?,
        machines: tx.site_machines()?.into_iter().map(At::new).collect(),
        vm_types: all(tx)?,
        images: all(tx)?,
        customers: all(tx)?,
    })
}

/// What an import changed.
#[derive(Debug, Default)]
pub struct ImportReport {
    /// `(kind, name)` of each object created.
    pub created: Vec<(&'static str, String)>,
    pub updated: Vec<(&'static str, String)>,
    pub unchanged: usize,
    /// Objects the inventory holds that the file does not mention (kept as they are).
    pub only_in_inventory: Vec<(&'static str, String)>,
}

impl ImportReport {
    pub fn is_noop(&self) -> bool {
        self.created.is_empty() && self.updated.is_empty()
    }
}

/// One kind's step of an import: compares the file's objects of that kind with the
/// inventory's, writes those that differ (each with its change event) and reports.
type Step = for<'a, 't> fn(&mut Import<'a, 't>) -> Result<()>;

/// The kinds of objects, in the order import writes them: each after those it refers to.
/// Named kinds are `(report label, event kind, the file's list, the name)`.
const KINDS: &[Step] = &[
    |i| {
        i.named(
            "iSCSI portal",
            EventKind::IscsiPortal,
            |f| &f.iscsi_portals,
            |p| &p.name,
        )
    },
    |i| {
        i.named(
            "VLAN pool",
            EventKind::VlanPool,
            |f| &f.vlan_pools,
            |p| &p.name,
        )
    },
    |i| i.named("network", EventKind::Network, |f| &f.networks, |n| &n.name),
    |i| i.named("IP pool", EventKind::IpPool, |f| &f.ip_pools, |p| &p.name),
    |i| i.named("switch", EventKind::Switch, |f| &f.switches, |s| &s.name),
    |i| i.links(),
    |i| i.machines(),
    |i| i.named("VM type", EventKind::VmType, |f| &f.vm_types, |t| &t.name),
    |i| i.named("image", EventKind::Image, |f| &f.images, |m| &m.name),
    |i| {
        i.named(
            "customer",
            EventKind::Customer,
            |f| &f.customers,
            |c| &c.name,
        )
    },
];

/// An import under way: the file (as compared), the inventory's export, the report so far.
struct Import<'a, 't> {
    tx: &'a Tx<'t>,
    new: &'a SiteFile,
    old: &'a SiteFile,
    /// When created objects are dated (Unix seconds).
    at: i64,
    report: ImportReport,
}

impl<'a, 't> Import<'a, 't> {
    /// Compares the file's objects of one kind with the inventory's by name; reports the
    /// result and returns the objects to write.
    fn changed<T: PartialEq>(
        &mut self,
        label: &'static str,
        items: fn(&SiteFile) -> &Vec<At<T>>,
        name: fn(&T) -> &str,
    ) -> Vec<&'a T> {
        let old: BTreeMap<&str, &T> = items(self.old).iter().map(|o| (name(o), &**o)).collect();
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for n in items(self.new) {
            let k = name(n);
            seen.insert(k);
            match old.get(k) {
                None => {
                    self.report.created.push((label, k.to_owned()));
                    out.push(&**n);
                }
                Some(o) if *o != &**n => {
                    self.report.updated.push((label, k.to_owned()));
                    out.push(&**n);
                }
                Some(_) => self.report.unchanged += 1,
            }
        }
        for k in old.keys().filter(|k| !seen.contains(*k)) {
            self.report.only_in_inventory.push((label, (*k).to_owned()));
        }
        out
    }

    /// A kind of objects matched by name and written whole.
    fn named<T: PartialEq + 'a>(
        &mut self,
        label: &'static str,
        event: EventKind,
        items: fn(&SiteFile) -> &Vec<At<T>>,
        name: fn(&T) -> &str,
    ) -> Result<()>
    where
        Tx<'t>: SiteObjects<T>,
    {
        for item in self.changed(label, items, name) {
            self.tx.put(item, self.at)?;
            record_event(self.tx, event, name(item))?;
        }
        Ok(())
    }

    /// Links are matched by their two ends, whichever way round; there is nothing to update.
    fn links(&mut self) -> Result<()> {
        let old: BTreeSet<_> = self.old.links.iter().map(|l| l.normalized()).collect();
        let new: BTreeSet<_> = self.new.links.iter().map(|l| l.normalized()).collect();
        for l in &self.new.links {
            if old.contains(&l.normalized()) {
                self.report.unchanged += 1;
                continue;
            }
            let name = format!("{} <-> {}", l.a, l.b);
            self.tx.put(&**l, self.at)?;
            record_event(self.tx, EventKind::Link, &name)?;
            self.report.created.push(("link", name));
        }
        for (a, b) in old.difference(&new) {
            let name = format!("{a} <-> {b}");
            self.report.only_in_inventory.push(("link", name));
        }
        Ok(())
    }

    /// Machines are written with their NICs, each NIC checked against the rest of the
    /// inventory.
    fn machines(&mut self) -> Result<()> {
        let changed = self.changed("machine", |f| &f.machines, |m| &m.name);
        // Remove the NICs of every changed machine first, so a NIC may move between machines.
        for m in &changed {
            self.tx.clear_nics(&m.name)?;
        }
        for m in changed {
            self.tx.put_machine(m, self.at)?;
            for n in &m.nics {
                add_nic(self.tx, m, n)?;
            }
            record_event(self.tx, EventKind::Machine, &m.name)?;
        }
        Ok(())
    }
}

/// Gives machine `m` its NIC `n`: a discovered placeholder with that MAC makes way, and a MAC
/// or address that something else in the inventory holds is an error.
fn add_nic(tx: &Tx<'_>, m: &Machine, n: &Nic) -> Result<()> {
    let invalid =
        |what: String| Error::Invalid(format!("machine {:?} NIC {}: {what}", m.name, n.device));
    // Enrolling a discovered machine: the site file now names it, so the placeholder goes.
    tx.drop_discovered(n.mac)?;
    if let Some(owner) = tx.mac_owner(n.mac)? {
        return Err(invalid(format!(
            "MAC {} already belongs to {owner:?} in the inventory",
            n.mac
        )));
    }
    if let Some(ip) = n.ip
        && tx.address_taken(ip)?
    {
        return Err(invalid(format!(
            "address {ip} is already allocated in the inventory"
        )));
    }
    let storage = match n.storage_ip {
        Some(ip) => Some(
            tx.storage_networks()?
                .into_iter()
                .find_map(|(name, subnet)| subnet.contains(ip).then_some(name))
                .ok_or_else(|| invalid(format!("storage_ip {ip} is in no storage network")))?,
        ),
        None => None,
    };
    tx.add_nic(&m.name, n, storage.as_deref())
}

/// The file as import compares it with the export: machines' NICs in device order, whatever
/// order the file lists them in; and a switch without `host_key` keeps the key the inventory
/// has pinned (set earlier, or learned on first use): re-importing a site must not unpin
/// switches; nor drop an imported image's archive.
fn comparable(file: &SiteFile, current: &SiteFile) -> SiteFile {
    let mut file = file.clone();
    for m in &mut file.machines {
        m.nics.sort_by(|a, b| a.device.cmp(&b.device));
    }
    for s in file.switches.iter_mut().filter(|s| s.host_key.is_none()) {
        s.host_key = current
            .switches
            .iter()
            .find(|c| c.name == s.name)
            .and_then(|c| c.host_key.clone());
    }
    // An image's content comes from `nhn image import`; a file that names no archive keeps it.
    for i in file.images.iter_mut().filter(|i| i.archive.is_empty()) {
        if let Some(c) = current.images.iter().find(|c| c.name == i.name) {
            i.archive.clone_from(&c.archive);
            i.sha256.clone_from(&c.sha256);
        }
    }
    file
}

/// Applies a validated site file; writes only objects that differ from the inventory.
pub fn import(tx: &Tx<'_>, file: &SiteFile) -> Result<ImportReport> {
    let current = export(tx)?;
    if !current.site.name.is_empty() && current.site.name != file.site.name {
        return Err(Error::Invalid(format!(
            "this inventory describes site {:?}, but the file describes site {:?}; import into the right data dir",
            current.site.name, file.site.name
        )));
    }
    let mut report = ImportReport::default();
    if current.site != file.site {
        let list = if current.site.name.is_empty() {
            &mut report.created
        } else {
            &mut report.updated
        };
        list.push(("site", file.site.name.clone()));
        tx.put_site_info(&file.site)?;
        record_event(tx, EventKind::Site, &file.site.name)?;
    }
    let mut import = Import {
        tx,
        new: &comparable(file, &current),
        old: &current,
        at: unix_now(),
        report,
    };
    for step in KINDS {
        step(&mut import)?;
    }
    Ok(import.report)
}
