//! Switch CLI templates: `switch-templates/<os>/<operation>.j2` (minijinja, strict undefined,
//! trim_blocks + lstrip_blocks) plus `os.toml` (exec or PTY session, setup lines, prompt
//! suffixes, error patterns, read-back parser). The sets shipped in the repository are built
//! into the binary; `[switch] templates_dir` replaces them with a folder of the same layout.
//!
//! [`render_batch`] turns a switch's read-back state and a batch of per-port changes into the
//! one list of CLI lines sent in one session: enter configuration, create VLANs new to the
//! switch, then every port's *make* steps (access VLAN, native VLAN, tagged adds), then every
//! port's *break* steps (native VLAN cleared, tagged removes: make before break), delete VLANs
//! no port carries any more, leave configuration, save once. A port never loses its untagged
//! VLAN before its new one is set: a native change is one command that replaces the old one
//! (IOS/EOS `switchport trunk native vlan`, Junos `native-vlan-id`, NVUE `untagged`, OVS
//! `tag=`), and the old VLAN leaves the allowed list only in the break steps.

use std::collections::BTreeMap;
use std::path::Path;

use minijinja::{Environment, UndefinedBehavior, Value, context};
use serde::Deserialize;

use super::plan::{Action, Mode, PortPlan};
use super::readback::{Parser, SwitchState};
use super::vlans::{Vlan, VlanSet};

/// Every operation a template set must define.
pub const OPERATIONS: &[&str] = &[
    "begin",
    "create_vlan",
    "delete_vlan",
    "trunk_add",
    "trunk_remove",
    "native_vlan",
    "native_remove",
    "access_vlan",
    "end",
    "save",
    "show",
];

/// The template sets shipped with nhn.
pub const BUILTIN_OS: &[&str] = &[
    "openvswitch",
    "cisco-ios",
    "arista-eos",
    "junos",
    "cumulus-nvue",
];

macro_rules! builtin_files {
    ($($os:literal),*) => {
        &[$(
            ($os, concat!($os, "/os.toml"), include_str!(concat!("../../switch-templates/", $os, "/os.toml"))),
            ($os, "begin", include_str!(concat!("../../switch-templates/", $os, "/begin.j2"))),
            ($os, "create_vlan", include_str!(concat!("../../switch-templates/", $os, "/create_vlan.j2"))),
            ($os, "delete_vlan", include_str!(concat!("../../switch-templates/", $os, "/delete_vlan.j2"))),
            ($os, "trunk_add", include_str!(concat!("../../switch-templates/", $os, "/trunk_add.j2"))),
            ($os, "trunk_remove", include_str!(concat!("../../switch-templates/", $os, "/trunk_remove.j2"))),
            ($os, "native_vlan", include_str!(concat!("../../switch-templates/", $os, "/native_vlan.j2"))),
            ($os, "native_remove", include_str!(concat!("../../switch-templates/", $os, "/native_remove.j2"))),
            ($os, "access_vlan", include_str!(concat!("../../switch-templates/", $os, "/access_vlan.j2"))),
            ($os, "end", include_str!(concat!("../../switch-templates/", $os, "/end.j2"))),
            ($os, "save", include_str!(concat!("../../switch-templates/", $os, "/save.j2"))),
            ($os, "show", include_str!(concat!("../../switch-templates/", $os, "/show.j2"))),
        )*]
    };
}

const BUILTIN: &[(&str, &str, &str)] = builtin_files!(
    "openvswitch",
    "cisco-ios",
    "arista-eos",
    "junos",
    "cumulus-nvue"
);

/// How a session with the switch works.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionMode {
    /// One `exec` request per batch; the exit status and the output tell success.
    Exec,
    /// An interactive shell on a PTY: one line at a time, each answered by a prompt.
    Pty,
}

/// `os.toml`: how to talk to this kind of switch.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OsMeta {
    pub mode: SessionMode,
    pub parser: Parser,
    /// Lines sent once at the start of a PTY session (e.g. `terminal length 0`).
    #[serde(default)]
    pub setup: Vec<String>,
    /// A PTY line is done when the output ends with one of these (after the last newline).
    #[serde(default)]
    pub prompt_suffixes: Vec<String>,
    /// Output containing any of these means the command failed.
    #[serde(default)]
    pub errors: Vec<String>,
    /// Consecutive batch lines starting with this prefix become one command, joined by
    /// `merge_separator` (Open vSwitch: one `ovs-vsctl` transaction, one reconfiguration).
    #[serde(default)]
    pub merge_prefix: Option<String>,
    #[serde(default)]
    pub merge_separator: String,
    /// Exec mode only: the batch prints nothing when it succeeds, so the verifying read-back
    /// can run in the same request (one exec per batch instead of two).
    #[serde(default)]
    pub verify_in_batch: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("switch templates {os}/{operation}: {message}")]
pub struct TemplateError {
    pub os: String,
    pub operation: String,
    pub message: String,
}

fn terr(os: &str, operation: &str, message: impl ToString) -> TemplateError {
    TemplateError {
        os: os.to_owned(),
        operation: operation.to_owned(),
        message: message.to_string(),
    }
}

/// One OS's templates, compiled.
pub struct TemplateSet {
    pub os: String,
    pub meta: OsMeta,
    env: Environment<'static>,
}

/// `[100, 101, 102, 200]` → `"100-102,200"` (the CLI range form).
fn ranges(v: Vec<Vlan>) -> String {
    v.into_iter().collect::<VlanSet>().to_string()
}

impl TemplateSet {
    fn new(os: &str, meta_text: &str, ops: &[(&str, String)]) -> Result<Self, TemplateError> {
        let meta: OsMeta = toml::from_str(meta_text).map_err(|e| terr(os, "os.toml", e))?;
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| terr(os, "syntax", e))?;
        env.set_syntax(syntax);
        env.add_filter("ranges", ranges);
        for op in OPERATIONS {
            let Some((_, src)) = ops.iter().find(|(name, _)| name == op) else {
                return Err(terr(os, op, format!("missing {op}.j2")));
            };
            env.add_template_owned(op.to_string(), src.clone())
                .map_err(|e| terr(os, op, e))?;
        }
        Ok(TemplateSet {
            os: os.to_owned(),
            meta,
            env,
        })
    }

    /// Renders `operation` with `ctx` into CLI lines (blank lines dropped).
    pub fn render(&self, operation: &str, ctx: Value) -> Result<Vec<String>, TemplateError> {
        let tmpl = self
            .env
            .get_template(operation)
            .map_err(|e| terr(&self.os, operation, e))?;
        let text = tmpl.render(ctx).map_err(|e| terr(&self.os, operation, e))?;
        Ok(text
            .lines()
            .map(str::trim_end)
            .filter(|l| !l.trim().is_empty())
            .map(String::from)
            .collect())
    }
}

/// All template sets, by OS name.
pub struct Templates {
    sets: BTreeMap<String, TemplateSet>,
}

impl Templates {
    /// The sets built into the binary.
    pub fn builtin() -> Result<Self, TemplateError> {
        let mut sets = BTreeMap::new();
        for os in BUILTIN_OS {
            let files: Vec<(&str, String)> = BUILTIN
                .iter()
                .filter(|(o, _, _)| o == os)
                .map(|(_, name, src)| (*name, (*src).to_owned()))
                .collect();
            let meta = files
                .iter()
                .find(|(n, _)| n.ends_with("os.toml"))
                .map(|(_, s)| s.clone())
                .unwrap_or_default();
            sets.insert(os.to_string(), TemplateSet::new(os, &meta, &files)?);
        }
        Ok(Templates { sets })
    }

    /// Every sub-folder of `dir` that has an `os.toml` is a template set.
    pub fn from_dir(dir: &Path) -> Result<Self, TemplateError> {
        let read_err = |what: &Path, e: std::io::Error| {
            terr(
                &dir.display().to_string(),
                "",
                format!("{}: {e}", what.display()),
            )
        };
        let mut sets = BTreeMap::new();
        for entry in std::fs::read_dir(dir).map_err(|e| read_err(dir, e))? {
            let path = entry.map_err(|e| read_err(dir, e))?.path();
            let meta_path = path.join("os.toml");
            if !meta_path.is_file() {
                continue;
            }
            let os = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let meta = std::fs::read_to_string(&meta_path).map_err(|e| read_err(&meta_path, e))?;
            let mut files = Vec::new();
            for op in OPERATIONS {
                let p = path.join(format!("{op}.j2"));
                let src = std::fs::read_to_string(&p).map_err(|e| read_err(&p, e))?;
                files.push((*op, src));
            }
            sets.insert(os.clone(), TemplateSet::new(&os, &meta, &files)?);
        }
        Ok(Templates { sets })
    }

    pub fn get(&self, os: &str) -> Result<&TemplateSet, TemplateError> {
        self.sets.get(os).ok_or_else(|| {
            let known: Vec<&str> = self.sets.keys().map(String::as_str).collect();
            terr(
                os,
                "",
                format!(
                    "no such template set; the switch's `os` must be one of {}",
                    known.join(", ")
                ),
            )
        })
    }
}

/// One change on one port of the switch being configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortChange {
    pub port: String,
    pub action: Action,
    pub vlan: Vlan,
}

/// The CLI lines of one batch and what every port should report afterwards.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub lines: Vec<String>,
    pub expected: BTreeMap<String, PortPlan>,
}

/// The name a VLAN gets when nhn creates it.
pub fn vlan_name(v: Vlan) -> String {
    format!("VLAN{v:04}")
}

/// What a batch does to one port, in the order it is done.
#[derive(Debug, Clone, PartialEq)]
pub struct PortSteps {
    pub before: PortPlan,
    /// Make: the port becomes an access port in this VLAN.
    pub access: Option<Vlan>,
    /// Make: this VLAN becomes the trunk's native VLAN.
    pub native: Option<Vlan>,
    /// Make: tagged VLANs added.
    pub add: VlanSet,
    /// The port once the make steps are done.
    pub made: PortPlan,
    /// Break: this native VLAN is cleared.
    pub clear_native: Option<Vlan>,
    /// Break: VLANs taken off the trunk (tagged removes, and a former native VLAN that the port
    /// no longer carries at all).
    pub remove: VlanSet,
    pub after: PortPlan,
}

impl PortSteps {
    /// The steps that take a port in state `before` through `changes` (all on this port);
    /// changes already true are dropped. `None` when nothing is left to do.
    pub fn new<'c>(
        before: &PortPlan,
        changes: impl IntoIterator<Item = &'c PortChange>,
    ) -> Option<Self> {
        let mut access = None;
        let mut native = None;
        let mut clear_native = None;
        let mut add = VlanSet::new();
        let mut remove = VlanSet::new();
        for c in changes {
            if c.action.holds(c.vlan, before) {
                continue;
            }
            match c.action {
                Action::Access => access = Some(c.vlan),
                Action::Native => native = Some(c.vlan),
                Action::ClearNative => clear_native = Some(c.vlan),
                Action::Add => add.insert(c.vlan),
                Action::Remove => remove.insert(c.vlan),
            }
        }
        let mut made = before.clone();
        if let Some(v) = access {
            made = PortPlan::access(v);
        }
        // An access port that gets tagged VLANs becomes a trunk that keeps its VLAN untagged.
        if made.mode == Mode::Access && !add.is_empty() && native.is_none() {
            native = made.native;
        }
        // A native VLAN replaced by another leaves the port unless it is wanted tagged.
        let mut dropped = VlanSet::new();
        // (An access port's tagged set is empty: these become trunks with what it had.)
        if let Some(n) = native {
            if let Some(old) = made.native.filter(|o| *o != n) {
                dropped.insert(old);
            }
            made = PortPlan::trunk(Some(n), made.tagged.clone());
        }
        if !add.is_empty() {
            let mut tagged = made.tagged.clone();
            tagged.union_with(&add);
            made = PortPlan::trunk(made.native, tagged);
        }
        let mut after = made.clone();
        if let Some(m) = clear_native.filter(|m| after.native == Some(*m)) {
            let mut tagged = after.tagged.clone();
            // Added tagged while it was still native: it stays, tagged.
            if add.contains(m) {
                tagged.insert(m);
            }
            after = PortPlan::trunk(None, tagged);
            dropped.insert(m);
        } else {
            clear_native = None;
        }
        // A tagged remove of the native VLAN changes nothing: the native VLAN stays carried.
        remove = remove
            .iter()
            .filter(|v| after.tagged.contains(*v))
            .collect();
        after.tagged = after.tagged.minus(&remove);
        for v in dropped.iter().filter(|v| !after.contains(*v)) {
            remove.insert(v);
        }
        if access.is_none()
            && native.is_none()
            && add.is_empty()
            && clear_native.is_none()
            && remove.is_empty()
        {
            return None;
        }
        Some(PortSteps {
            before: before.clone(),
            access,
            native,
            add,
            made,
            clear_native,
            remove,
            after,
        })
    }
}

/// Renders one batch (see the module doc for the order). Changes that are already true on
/// the switch are dropped; an empty batch has no lines.
pub fn render_batch(
    set: &TemplateSet,
    switch: &str,
    state: &SwitchState,
    changes: &[PortChange],
) -> Result<Batch, TemplateError> {
    let mut expected = state.ports.clone();
    let mut by_port: BTreeMap<&str, Vec<&PortChange>> = BTreeMap::new();
    for c in changes {
        by_port.entry(&c.port).or_default().push(c);
    }
    let mut steps: Vec<(&str, PortSteps)> = Vec::new();
    for (port, cs) in by_port {
        let before = expected.get(port).cloned().unwrap_or_default();
        if let Some(s) = PortSteps::new(&before, cs) {
            expected.insert(port.to_owned(), s.after.clone());
            steps.push((port, s));
        }
    }
    if steps.is_empty() {
        return Ok(Batch {
            lines: Vec::new(),
            expected,
        });
    }
    let base = |extra: Value| context! { switch => switch, ..extra };
    let mut lines = set.render("begin", base(context! {}))?;
    let mut new_vlans = VlanSet::new();
    for (_, s) in &steps {
        new_vlans.union_with(&s.made.carried().minus(&s.before.carried()));
    }
    for v in new_vlans.minus(&state.vlans).iter() {
        lines.extend(set.render(
            "create_vlan",
            base(context! { vlan => v, name => vlan_name(v) }),
        )?);
    }
    for (port, s) in &steps {
        let port = *port;
        if let Some(v) = s.access {
            lines.extend(set.render("access_vlan", base(context! { port, vlan => v }))?);
        }
        if let Some(v) = s.native {
            let vlans = s.made.tagged.to_vec();
            lines.extend(set.render("native_vlan", base(context! { port, vlan => v, vlans }))?);
        }
        if !s.add.is_empty() {
            let ctx = context! {
                port,
                add => s.add.to_vec(),
                vlans => s.made.tagged.to_vec(),
                native => s.made.native,
            };
            lines.extend(set.render("trunk_add", base(ctx))?);
        }
    }
    let mut removed = VlanSet::new();
    for (port, s) in &steps {
        let port = *port;
        removed.union_with(&s.before.carried().minus(&s.after.carried()));
        if let Some(v) = s.clear_native {
            let vlans = s.after.tagged.to_vec();
            lines.extend(set.render("native_remove", base(context! { port, vlan => v, vlans }))?);
        }
        if !s.remove.is_empty() {
            let ctx = context! {
                port,
                remove => s.remove.to_vec(),
                vlans => s.after.tagged.to_vec(),
                native => s.after.native,
            };
            lines.extend(set.render("trunk_remove", base(ctx))?);
        }
    }
    let mut still_used = VlanSet::new();
    for p in expected.values() {
        still_used.union_with(&p.carried());
    }
    for v in removed.minus(&still_used).iter() {
        if state.vlans.contains(v) && v != 1 {
            lines.extend(set.render(
                "delete_vlan",
                base(context! { vlan => v, name => vlan_name(v) }),
            )?);
        }
    }
    lines.extend(set.render("end", base(context! {}))?);
    lines.extend(set.render("save", base(context! {}))?);
    Ok(Batch {
        lines: merge_lines(&set.meta, lines),
        expected,
    })
}

/// Merges consecutive lines as the OS's `merge_prefix` says (unchanged without one).
pub fn merge_lines(meta: &OsMeta, lines: Vec<String>) -> Vec<String> {
    match &meta.merge_prefix {
        Some(prefix) => merge(lines, prefix, &meta.merge_separator),
        None => lines,
    }
}

/// Joins runs of lines that start with `prefix` into one line: the first keeps the prefix,
/// the others follow after `sep` without it.
fn merge(lines: Vec<String>, prefix: &str, sep: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut merging = false;
    for line in lines {
        match (line.strip_prefix(prefix), out.last_mut()) {
            (Some(rest), Some(last)) if merging => {
                last.push_str(sep);
                last.push_str(rest);
            }
            (Some(_), _) => {
                merging = true;
                out.push(line);
            }
            (None, _) => {
                merging = false;
                out.push(line);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trunk(s: &str) -> PortPlan {
        PortPlan::trunk(None, s.parse().unwrap())
    }

    fn state() -> SwitchState {
        SwitchState {
            ports: [
                ("swp1".to_owned(), trunk("100,200")),
                ("swp2".to_owned(), trunk("100,200")),
                ("swp3".to_owned(), trunk("200")),
                ("swp4".to_owned(), trunk("none")),
                (
                    "swp5".to_owned(),
                    PortPlan::trunk(Some(30), "100".parse().unwrap()),
                ),
                ("swp6".to_owned(), trunk("100")),
            ]
            .into_iter()
            .collect(),
            vlans: "1,30,100,200".parse().unwrap(),
        }
    }

    /// VM3-2 (VLAN 200) leaves Edge-Switch-3 and VLAN 300 arrives: adds on the host port and
    /// uplink, 200 removed everywhere (so it is deleted from the VLAN database). The host port
    /// gets its boot network (VLAN 20) untagged and the storage VLAN (10) tagged; swp5 loses its
    /// native VLAN 30 (so 30 is deleted too); swp6 becomes a bare-metal access port in 20.
    fn changes() -> Vec<PortChange> {
        let c = |port: &str, action, vlan| PortChange {
            port: port.into(),
            action,
            vlan,
        };
        vec![
            c("swp3", Action::Add, 300),
            c("swp3", Action::Add, 301),
            c("swp1", Action::Add, 300),
            c("swp1", Action::Add, 100), // already there: dropped
            c("swp3", Action::Remove, 200),
            c("swp1", Action::Remove, 200),
            c("swp2", Action::Remove, 200),
            c("swp2", Action::Remove, 100),
            c("swp3", Action::Native, 20),
            c("swp3", Action::Add, 10),
            c("swp5", Action::ClearNative, 30),
            c("swp6", Action::Access, 20),
        ]
    }

    fn golden_path(os: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/data/switch-golden/{os}.txt"))
    }

    /// Renders the same batch with every built-in set and compares it with the golden file
    /// (`UPDATE_GOLDEN=1 cargo test` rewrites them after an intended template change).
    #[test]
    fn every_builtin_os_renders_its_golden_batch() {
        let t = Templates::builtin().unwrap();
        for os in BUILTIN_OS {
            let set = t.get(os).unwrap();
            let batch = render_batch(set, "Edge-Switch-3", &state(), &changes()).unwrap();
            let mut text = batch.lines.join("\n");
            text.push_str("\n--- show\n");
            text.push_str(
                &set.render("show", context! { switch => "Edge-Switch-3" })
                    .unwrap()
                    .join("\n"),
            );
            text.push_str("\n--- access_vlan\n");
            let access = set
                .render(
                    "access_vlan",
                    context! { switch => "x", port => "swp9", vlan => 42 },
                )
                .unwrap();
            text.push_str(&access.join("\n"));
            text.push('\n');
            let path = golden_path(os);
            if std::env::var_os("UPDATE_GOLDEN").is_some() {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, &text).unwrap();
            }
            let golden = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_GOLDEN=1)", path.display()));
            assert_eq!(
                text,
                golden,
                "{os}: rendering differs from {}",
                path.display()
            );
        }
    }

    #[test]
    fn merging_joins_only_consecutive_prefixed_lines() {
        let l = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            merge(l(&["x a", "x b", "y", "x c"]), "x ", " -- "),
            l(&["x a -- b", "y", "x c"])
        );
    }

    #[test]
    fn batch_expects_the_ports_after_the_changes() {
        let t = Templates::builtin().unwrap();
        let b = render_batch(t.get("openvswitch").unwrap(), "s", &state(), &changes()).unwrap();
        let got: Vec<String> = b.expected.iter().map(|(p, v)| format!("{p}={v}")).collect();
        assert_eq!(
            got,
            [
                "swp1=100,300",
                "swp2=none",
                "swp3=native 20 + 10,300-301",
                "swp4=none",
                "swp5=100",
                "swp6=access 20"
            ]
        );
    }

    /// Make before break for untagged VLANs, per port: (port before, changes, steps as
    /// "make | break", port after).
    #[test]
    fn port_steps_set_the_new_untagged_vlan_before_the_old_one_goes() {
        let p = |n: Option<Vlan>, t: &str| PortPlan::trunk(n, t.parse().unwrap());
        let c = |action, vlan| PortChange {
            port: "swp3".into(),
            action,
            vlan,
        };
        let show = |s: &PortSteps| {
            let mut make = Vec::new();
            if let Some(v) = s.access {
                make.push(format!("access {v}"));
            }
            if let Some(v) = s.native {
                make.push(format!("native {v}"));
            }
            if !s.add.is_empty() {
                make.push(format!("add {}", s.add));
            }
            let mut brk = Vec::new();
            if let Some(v) = s.clear_native {
                brk.push(format!("clear native {v}"));
            }
            if !s.remove.is_empty() {
                brk.push(format!("remove {}", s.remove));
            }
            format!("{} | {}", make.join(", "), brk.join(", "))
        };
        let cases = [
            // A native VLAN replaced: the old one leaves the trunk after the new one is set.
            (
                p(Some(30), "10"),
                vec![c(Action::Native, 20)],
                "native 20 | remove 30",
                "native 20 + 10",
            ),
            // ... unless it stays tagged.
            (
                p(Some(30), "10"),
                vec![c(Action::Native, 20), c(Action::Add, 30)],
                "native 20, add 30 | ",
                "native 20 + 10,30",
            ),
            // A tagged VLAN becoming native is not taken off the trunk.
            (
                p(None, "10,20"),
                vec![c(Action::Native, 20), c(Action::Remove, 20)],
                "native 20 | ",
                "native 20 + 10",
            ),
            // An access port in 20 that gets tagged VLANs becomes a trunk with 20 native...
            (
                PortPlan::access(20),
                vec![c(Action::Native, 20), c(Action::Add, 10)],
                "native 20, add 10 | ",
                "native 20 + 10",
            ),
            // ... or, with 20 cleared, a trunk without one.
            (
                PortPlan::access(20),
                vec![c(Action::Add, 10), c(Action::ClearNative, 20)],
                "native 20, add 10 | clear native 20, remove 20",
                "10",
            ),
            // A native VLAN cleared: it leaves the trunk unless wanted tagged.
            (
                p(Some(20), "10"),
                vec![c(Action::ClearNative, 20)],
                " | clear native 20, remove 20",
                "10",
            ),
            (
                p(Some(20), "10"),
                vec![c(Action::Add, 20), c(Action::ClearNative, 20)],
                "add 20 | clear native 20",
                "10,20",
            ),
            // A trunk becomes an access port in one step.
            (
                p(Some(20), "10"),
                vec![c(Action::Access, 300)],
                "access 300 | ",
                "access 300",
            ),
        ];
        for (before, cs, steps, after) in cases {
            let s = PortSteps::new(&before, &cs).unwrap();
            assert_eq!(
                (show(&s).as_str(), s.after.to_string().as_str()),
                (steps, after),
                "{before}"
            );
        }
        // Changes that are already true leave nothing to do.
        assert!(
            PortSteps::new(
                &p(Some(20), "10"),
                &[c(Action::Native, 20), c(Action::Remove, 30)]
            )
            .is_none()
        );
    }

    #[test]
    fn a_batch_of_changes_already_true_renders_nothing() {
        let t = Templates::builtin().unwrap();
        let c = [PortChange {
            port: "swp1".into(),
            action: Action::Add,
            vlan: 100,
        }];
        let b = render_batch(t.get("cisco-ios").unwrap(), "s", &state(), &c).unwrap();
        assert!(b.lines.is_empty());
    }

    #[test]
    fn undefined_variables_are_errors_not_empty_strings() {
        let t = Templates::builtin().unwrap();
        let err = t
            .get("cisco-ios")
            .unwrap()
            .render("trunk_add", context! { port => "swp1" })
            .unwrap_err();
        assert_eq!(err.os, "cisco-ios");
        assert_eq!(err.operation, "trunk_add");
    }

    #[test]
    fn unknown_os_names_the_known_ones() {
        let t = Templates::builtin().unwrap();
        let e = t.get("procurve").err().unwrap().to_string();
        assert!(e.contains("openvswitch") && e.contains("cisco-ios"), "{e}");
    }

    #[test]
    fn the_repository_folder_loads_like_the_builtin_sets() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("switch-templates");
        let t = Templates::from_dir(&dir).unwrap();
        for os in BUILTIN_OS {
            assert_eq!(
                t.get(os).unwrap().meta,
                Templates::builtin().unwrap().get(os).unwrap().meta
            );
        }
    }
}
