//! The layering of ARCHITECTURE.md, checked: which workspace crate may depend on which
//! (`config` and `engine` on none, `sinks` on `engine` only), which of the engine's
//! modules `sinks` may use, and, inside the engine, which modules the audit rules
//! (`engine/src/rules/`) may use and who may use them.
//!
//! The second list is a ratchet, not the goal: the declared rule is "`sinks` uses only the
//! event model", and today's code uses more (ARCHITECTURE.md, "Where the code and the declared
//! layering disagree"). The test fails when a new engine module is used from `sinks`, so that
//! the list only shrinks unless someone decides otherwise and writes it down there.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Engine items `sinks` may name at the crate's root: the event model, and the uid resolver
/// trait that builds one.
const SINKS_ENGINE_ROOT_ITEMS: &[&str] = &["Event", "UserResolver"];

/// Engine modules `sinks` uses today, and why (see ARCHITECTURE.md). Remove an entry when its
/// use goes; add one only with a line in ARCHITECTURE.md.
const SINKS_ENGINE_MODULES: &[&str] = &[
    "pool",          // the way back: written events return to the reassembler
    "types",         // record type names, for the enriched and ecs formats
    "record",        // the parsed record model, for the enriched and ecs formats
    "decode",        // hex, argv, sockaddr decoding, for the enriched and ecs formats
    "arch",          // arch names, for the enriched and ecs formats
    "syscall_table", // syscall names, for the enriched and ecs formats
    "container",     // attribution printed by the enriched and ecs formats
    "lineage",       // the parent process printed by the enriched and ecs formats
    "privileges",    // user and group by name, for the file output's owner
    "add_message",   // unit tests of the pauditd format build events with it
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The workspace crates (`pauditd-*`) a manifest depends on outside its dev-dependencies.
fn workspace_deps(manifest: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(manifest).unwrap();
    let mut deps = BTreeSet::new();
    let mut in_deps = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            let header = line.trim_matches(|c| c == '[' || c == ']');
            in_deps = header == "dependencies"
                || header.starts_with("dependencies.")
                || (header.starts_with("target.") && header.ends_with(".dependencies"));
            if let Some(name) = header.strip_prefix("dependencies.") {
                if name.starts_with("pauditd-") {
                    deps.insert(name.to_string());
                }
            }
            continue;
        }
        if in_deps && line.starts_with("pauditd-") {
            let name = line
                .split(|c: char| c == '=' || c == '.' || c.is_whitespace())
                .next()
                .unwrap();
            deps.insert(name.to_string());
        }
    }
    deps
}

#[test]
fn config_and_engine_depend_on_no_workspace_crate_and_sinks_only_on_engine() {
    let r = root();
    assert_eq!(
        workspace_deps(&r.join("config/Cargo.toml")),
        BTreeSet::new(),
        "config depends on no other workspace crate"
    );
    assert_eq!(
        workspace_deps(&r.join("engine/Cargo.toml")),
        BTreeSet::new(),
        "the engine knows neither the sinks nor the config crate"
    );
    assert_eq!(
        workspace_deps(&r.join("sinks/Cargo.toml")),
        BTreeSet::from(["pauditd-engine".to_string()]),
        "sinks depends on the engine only (never on config: the binary wires them)"
    );
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The first path segment after every `pauditd_engine::` in `text` (each name of a
/// `pauditd_engine::{a, b::c}` group).
fn engine_items(text: &str) -> Vec<String> {
    items_after(text, "pauditd_engine::")
}

/// The first path segment after every `prefix` in `text` (each name of a `prefix{a, b::c}`
/// group).
fn items_after(text: &str, prefix: &str) -> Vec<String> {
    let mut items = Vec::new();
    for (at, _) in text.match_indices(prefix) {
        if text[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &text[at + prefix.len()..];
        let segment = |s: &str| {
            s.trim()
                .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                .next()
                .unwrap_or("")
                .to_string()
        };
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').expect("a closed use group")];
            items.extend(group.split(',').map(segment).filter(|s| !s.is_empty()));
        } else {
            items.push(segment(rest));
        }
    }
    items
}

#[test]
fn sinks_uses_no_engine_module_beyond_the_listed_ones() {
    let mut files = Vec::new();
    rust_files(&root().join("sinks/src"), &mut files);
    let mut unlisted = BTreeSet::new();
    let mut seen = BTreeSet::new();
    for file in &files {
        for item in engine_items(&std::fs::read_to_string(file).unwrap()) {
            seen.insert(item.clone());
            let listed = SINKS_ENGINE_ROOT_ITEMS.contains(&item.as_str())
                || SINKS_ENGINE_MODULES.contains(&item.as_str());
            if !listed {
                unlisted.insert(format!("{item} ({})", file.display()));
            }
        }
    }
    assert!(
        unlisted.is_empty(),
        "sinks uses engine items beyond the layering's list (ARCHITECTURE.md): {unlisted:?}"
    );
    // The ratchet only holds if the list is today's: an entry nothing uses any more goes.
    let stale: Vec<_> = SINKS_ENGINE_MODULES
        .iter()
        .chain(SINKS_ENGINE_ROOT_ITEMS)
        .filter(|m| !seen.contains(**m))
        .collect();
    assert!(
        stale.is_empty(),
        "no longer used by sinks, remove from the list: {stale:?}"
    );
}

#[test]
fn engine_items_reads_paths_and_use_groups() {
    assert_eq!(
        engine_items("use pauditd_engine::{types, Event};\nx: pauditd_engine::pool::EventPool"),
        ["types", "Event", "pool"]
    );
    assert_eq!(
        engine_items("use pauditd_engine::{\n    add_message::add_record,\n    UserResolver,\n};"),
        ["add_message", "UserResolver"]
    );
}

/// Engine modules each part of `engine/src/rules/` may use (`crate::X`; unit tests aside):
/// the auditctl language and the plan never talk to the kernel, only `kernel.rs` does (over
/// `netlink`). Stands in for a crate of their own until the language's tables (arch, syscall,
/// record types) and the user lookups it needs have a home outside the engine.
const RULES_MAY_USE: &[(&str, &[&str])] = &[
    (
        "language/",
        &["arch", "syscall_table", "types", "privileges"],
    ),
    ("source.rs", &[]),
    ("plan.rs", &[]),
    ("drift.rs", &[]),
    ("auditctl.rs", &[]),
    ("kernel.rs", &["netlink"]),
    ("mod.rs", &[]),
];

#[test]
fn the_rule_language_and_plan_never_reach_the_kernel_and_the_engine_never_loads_rules() {
    let dir = root().join("engine/src/rules");
    let mut files = Vec::new();
    rust_files(&dir, &mut files);
    let mut wrong = BTreeSet::new();
    for file in files.iter().filter(|f| !f.ends_with("tests.rs")) {
        let rel = file
            .strip_prefix(&dir)
            .unwrap()
            .to_string_lossy()
            .to_string();
        let (_, allowed) = RULES_MAY_USE
            .iter()
            .find(|(part, _)| rel.starts_with(part))
            .unwrap_or_else(|| panic!("{rel}: not in RULES_MAY_USE"));
        for item in items_after(&std::fs::read_to_string(file).unwrap(), "crate::") {
            if item != "rules" && !allowed.contains(&item.as_str()) {
                wrong.insert(format!("{rel} uses crate::{item}"));
            }
        }
    }
    // The rest of the engine: only `lib.rs` names the rules; nothing loads them on its own.
    let mut engine = Vec::new();
    rust_files(&root().join("engine/src"), &mut engine);
    for file in engine.iter().filter(|f| !f.starts_with(&dir)) {
        if items_after(&std::fs::read_to_string(file).unwrap(), "crate::").contains(&"rules".into())
        {
            wrong.insert(format!("{} uses crate::rules", file.display()));
        }
    }
    assert!(
        wrong.is_empty(),
        "the rules' layering (tests/layering.rs, ARCHITECTURE.md): {wrong:?}"
    );
}
