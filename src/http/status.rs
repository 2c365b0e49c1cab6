//! The operator's status page: what the inventory holds, in one small self-contained HTML page
//! (no scripts, no external assets, so it works from a serial-console jump host's browser).

use std::fmt::Write;

use crate::inventory::queries::{self, Counts};
use crate::inventory::site::{SiteFile, store};
use crate::inventory::vms::{VmOverview, Vms};
use crate::inventory::{self, Tx};
use crate::jobs::hosts::{self, HostRow};
use crate::switch::status::{self as switch_status, SwitchStatus};

pub struct Page {
    counts: Counts,
    site: SiteFile,
    switches: Vec<SwitchStatus>,
    hosts: Vec<HostRow>,
    vms: Vec<VmOverview>,
}

pub fn gather(tx: &Tx<'_>) -> inventory::Result<Page> {
    Ok(Page {
        counts: queries::counts(tx)?,
        site: store::export(tx)?,
        switches: switch_status::all(tx)?,
        hosts: hosts::list(tx)?,
        vms: tx.overview()?,
    })
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub fn render(p: &Page) -> String {
    let c = &p.counts;
    let title = if p.site.site.name.is_empty() {
        "nhn — no site imported yet".to_owned()
    } else {
        format!("nhn — site {}", esc(&p.site.site.name))
    };
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title><style>\
         body{{font-family:system-ui,sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse;margin:.5em 0 1.5em}}\
         td,th{{border:1px solid #ccc;padding:.25em .6em;text-align:left}}th{{background:#f3f3f3}}\
         </style></head><body><h1>{title}</h1>\
         <h2>Summary</h2><table>\
         <tr><th>switches</th><td>{} ({} core, {} edge)</td></tr>\
         <tr><th>links</th><td>{}</td></tr>\
         <tr><th>machines</th><td>{} ({} hypervisors, {} discovered)</td></tr>\
         <tr><th>VMs</th><td>{}</td></tr><tr><th>networks</th><td>{}</td></tr>\
         <tr><th>volumes</th><td>{}</td></tr><tr><th>images</th><td>{}</td></tr>\
         <tr><th>customers</th><td>{}</td></tr><tr><th>DHCP leases</th><td>{}</td></tr></table>",
        c.switches,
        c.core_switches,
        c.edge_switches,
        c.links,
        c.machines,
        c.hypervisors,
        c.discovered,
        c.vms,
        c.networks,
        c.volumes,
        c.images,
        c.customers,
        c.leases
    );
    h.push_str("<h2>Switches</h2><table><tr><th>name</th><th>role</th><th>driver</th><th>os</th><th>address</th><th>ports</th><th>MAC budget</th></tr>");
    for s in &p.site.switches {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&s.name),
            store::enum_str(&s.role),
            store::enum_str(&s.driver),
            esc(&s.os),
            esc(&s.address),
            s.ports.len(),
            s.max_macs.map_or("-".into(), |m| m.to_string())
        );
    }
    h.push_str("</table><h2>Switch plane</h2><table><tr><th>switch</th><th>health</th><th>queued intents</th><th>last success</th><th>last read-back</th><th>last error</th></tr>");
    for s in &p.switches {
        let mut err = match (&s.last_error, &s.last_error_at) {
            (Some(e), Some(at)) => format!("{} ({})", esc(e), esc(at)),
            _ => "-".into(),
        };
        if let Some(refusal) = &s.plan_refusal {
            err = format!("{}<br>{err}", esc(refusal));
        }
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{err}</td></tr>",
            esc(&s.name),
            s.health(),
            s.pending,
            esc(s.last_success_at.as_deref().unwrap_or("never")),
            esc(s.last_readback_at.as_deref().unwrap_or("never")),
        );
    }
    h.push_str("</table><h2>Hypervisors</h2><table><tr><th>name</th><th>state</th><th>agent</th><th>last report</th><th>VMs</th><th>free (agent's view)</th></tr>");
    for host in &p.hosts {
        let vms: Vec<String> = host
            .vms
            .iter()
            .map(|(vm, state, _)| esc(&format!("{vm} {state}")))
            .collect();
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} vCPU / {} MB</td></tr>",
            esc(&host.name),
            esc(&host.state),
            esc(&host.agent),
            esc(if host.last_report_at.is_empty() {
                "never"
            } else {
                &host.last_report_at
            }),
            vms.join("<br>"),
            host.report.vcpus_free,
            host.report.memory_free_mb
        );
    }
    h.push_str("</table><h2>VMs</h2><table><tr><th>VM</th><th>customer</th><th>type</th><th>state</th><th>hypervisor</th><th>reason</th></tr>");
    for v in &p.vms {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&v.vm),
            esc(&v.customer),
            esc(&v.vm_type),
            esc(&v.state),
            esc(if v.host.is_empty() { "-" } else { &v.host }),
            esc(&v.reason)
        );
    }
    h.push_str("</table><h2>Machines</h2><table><tr><th>name</th><th>kind</th><th>capacity</th><th>NICs</th></tr>");
    for m in &p.site.machines {
        let nics: Vec<String> = m
            .nics
            .iter()
            .map(|n| {
                let port = n.port.as_ref().map_or(String::new(), |p| format!(" → {p}"));
                esc(&format!("{} {}{port}", n.device, n.mac))
            })
            .collect();
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{} vCPU / {} MB</td><td>{}</td></tr>",
            esc(&m.name),
            store::enum_str(&m.kind),
            m.vcpus,
            m.memory_mb,
            nics.join("<br>")
        );
    }
    h.push_str("</table><h2>Networks</h2><table><tr><th>name</th><th>role</th><th>VLAN</th><th>subnet</th></tr>");
    for n in &p.site.networks {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&n.name),
            store::enum_str(&n.role),
            n.vlan,
            n.subnet
        );
    }
    let _ = write!(
        h,
        "</table><p>nhn {} · <a href=\"/metrics\">metrics</a> · <a href=\"/healthz\">health</a></p></body></html>",
        env!("CARGO_PKG_VERSION")
    );
    h
}
