//! The layering of ARCHITECTURE.md, checked: every `crate::<module>` path in the library's
//! production code must name a module its layer may import (the `<!-- layering -->` block
//! lists them). Test modules (`#[cfg(test)] mod …`, to the end of the file) and comments are
//! not checked. The checker itself is tested on a planted upward import.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// module -> the modules it may import (`None`: any).
type Rules = BTreeMap<String, Option<BTreeSet<String>>>;

fn rules(architecture: &str) -> Rules {
    let start = architecture
        .find("<!-- layering -->")
        .expect("ARCHITECTURE.md has a <!-- layering --> block");
    let end = architecture
        .find("<!-- /layering -->")
        .expect("ARCHITECTURE.md closes the layering block");
    architecture[start..end]
        .lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(m, _)| !m.contains(' ') && !m.contains('<') && !m.is_empty())
        .map(|(m, deps)| {
            let deps = deps.trim();
            let allowed =
                (deps != "*").then(|| deps.split_whitespace().map(String::from).collect());
            (m.trim().to_owned(), allowed)
        })
        .collect()
}

/// The production part of a source file: up to its test module, without comment lines.
fn production(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim() == "#[cfg(test)]"
            && lines
                .peek()
                .is_some_and(|next| next.trim_start().starts_with("mod ") || next.contains(" mod "))
        {
            break;
        }
        if !line.trim_start().starts_with("//") {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The crate modules a file's production code names.
fn imports(text: &str) -> BTreeSet<String> {
    let code = production(text);
    code.match_indices("crate::")
        .filter(|(i, _)| {
            // `crate::` itself, not `mycrate::`.
            code[..*i]
                .chars()
                .next_back()
                .is_none_or(|c| !c.is_alphanumeric() && c != '_')
        })
        .map(|(i, _)| {
            code[i + 7..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect::<String>()
        })
        .filter(|m| !m.is_empty())
        .collect()
}

/// The top-level module a source path belongs to (`src/jobs/edge.rs` -> `jobs`).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    Some(first.trim_end_matches(".rs").to_owned())
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every import against the rules, as `file: module -> imported`.
fn violations(rules: &Rules, files: &[(String, String, String)]) -> Vec<String> {
    let mut out = Vec::new();
    for (name, module, text) in files {
        let Some(allowed) = rules.get(module) else {
            out.push(format!(
                "{name}: module `{module}` is not in ARCHITECTURE.md's layering list; add it"
            ));
            continue;
        };
        let Some(allowed) = allowed else { continue };
        for used in imports(text) {
            if used != *module && !allowed.contains(&used) {
                out.push(format!(
                    "{name}: `{module}` imports `crate::{used}`, which its layer may not"
                ));
            }
        }
    }
    out
}

#[test]
fn the_library_keeps_to_its_layers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let architecture =
        std::fs::read_to_string(root.join("ARCHITECTURE.md")).expect("read ARCHITECTURE.md");
    let rules = rules(&architecture);
    assert!(rules.len() > 10, "too few layering rules parsed: {rules:?}");
    let src = root.join("src");
    let mut paths = Vec::new();
    rust_files(&src, &mut paths);
    let files: Vec<(String, String, String)> = paths
        .iter()
        .filter(|p| {
            !matches!(
                p.file_name().and_then(|n| n.to_str()),
                Some("main.rs" | "lib.rs")
            )
        })
        .filter_map(|p| {
            let module = module_of(&src, p)?;
            let text = std::fs::read_to_string(p).ok()?;
            Some((
                p.strip_prefix(root).unwrap_or(p).display().to_string(),
                module,
                text,
            ))
        })
        .collect();
    assert!(
        files.len() > 50,
        "too few source files found: {}",
        files.len()
    );
    let bad = violations(&rules, &files);
    assert!(
        bad.is_empty(),
        "imports against ARCHITECTURE.md's layers:\n{}",
        bad.join("\n")
    );
}

/// Every file outside `src/inventory/sqlite/` keeps off rusqlite: the SQL sits behind the
/// repositories there. (`Tx` has no `Deref` to the connection, so code outside cannot run SQL
/// through it either; this catches a `use rusqlite` that would go around it.)
#[test]
fn only_the_sqlite_backend_speaks_sqlite() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = root.join("src");
    let mut paths = Vec::new();
    rust_files(&src, &mut paths);
    assert!(paths.len() > 50, "too few source files found");
    let offenders: Vec<String> = paths
        .iter()
        .map(|p| p.strip_prefix(root).unwrap_or(p).display().to_string())
        .filter(|rel| !rel.starts_with("src/inventory/sqlite/"))
        .filter(|rel| std::fs::read_to_string(root.join(rel)).is_ok_and(|t| t.contains("rusqlite")))
        .collect();
    assert!(
        offenders.is_empty(),
        "rusqlite outside src/inventory/sqlite/ (put the SQL behind a repository there): {offenders:?}"
    );
}

#[test]
fn a_planted_upward_import_is_caught() {
    let rules = rules(
        "<!-- layering -->\nutil:\ninventory: util\njobs: inventory util\nserve: *\n<!-- /layering -->",
    );
    let file = |name: &str, module: &str, text: &str| {
        (name.to_owned(), module.to_owned(), text.to_owned())
    };
    let files = [
        file(
            "src/inventory/mod.rs",
            "inventory",
            "use crate::util::now;\nuse crate::jobs::Engine;\n",
        ),
        file(
            "src/jobs/mod.rs",
            "jobs",
            "//! see [`crate::serve`]\nuse crate::inventory::X;\nfn f() { crate::util::now(); }\n",
        ),
        file(
            "src/util.rs",
            "util",
            "fn f() {}\n#[cfg(test)]\nmod tests {\n    use crate::jobs::X;\n}\n",
        ),
        file(
            "src/serve.rs",
            "serve",
            "use crate::jobs::Engine;\nuse crate::inventory::I;\n",
        ),
        file("src/new.rs", "new", "fn f() {}\n"),
    ];
    assert_eq!(
        violations(&rules, &files),
        [
            "src/inventory/mod.rs: `inventory` imports `crate::jobs`, which its layer may not",
            "src/new.rs: module `new` is not in ARCHITECTURE.md's layering list; add it",
        ]
    );
    assert_eq!(
        imports("let x = mycrate::jobs::y; use crate::a::b; crate::c();"),
        ["a", "c"].map(String::from).into_iter().collect()
    );
}
