//! The enriched format's JSON Schema (`docs/enriched.schema.json`): one type per field.
//!
//! The schema is generated from the encoder's own field table
//! (`pauditd_sinks::enriched::fields`, itself taken from audit-userspace's `typetab.h` and
//! `interpret.c`), pinned as a file beside the docs (`make goldens` rewrites it; review the
//! diff), and every enriched golden and every log of the shared corpus, replayed in the
//! enriched format, must validate against it. A field whose JSON type would depend on its
//! value (`arch=40000003` as a number where `c000003e` is a string) fails here.

use std::path::{Path, PathBuf};
use std::process::Command;

use pauditd_sinks::enriched::fields::{self, Kind};
use serde_json::{json, Map, Value};

#[path = "support/schema.rs"]
mod schema;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn schema_path() -> PathBuf {
    root().join("docs/enriched.schema.json")
}

fn kind_schema(k: Kind) -> Value {
    match k {
        Kind::Int => json!({"type": ["integer", "null"]}),
        Kind::Escaped | Kind::Text => json!({"type": ["string", "null"]}),
    }
}

/// A record of type `rtype` (`None`: any type without exceptions), named `def`.
fn record(def: &str, rtype: Option<u16>) -> Value {
    let mut props = Map::new();
    for f in fields::int_fields() {
        props.insert(
            String::from_utf8_lossy(f).into_owned(),
            kind_schema(Kind::Int),
        );
    }
    props.insert(
        "ARGV".into(),
        json!({"type": "array", "items": {"type": "string"}}),
    );
    props.insert("ARGV_TRUNCATED".into(), json!({"type": "boolean"}));
    props.insert("SADDR".into(), json!({"$ref": "#/$defs/sockaddr"}));
    props.insert(
        "RAW".into(),
        json!({
            "description": "Values that are not of their field's type, as written (the field itself is null).",
            "type": "object",
            "additionalProperties": {"type": "string"}
        }),
    );
    props.insert(
        "text".into(),
        json!({"description": "Words without `=`, and a `text=` field's value.", "type": "string"}),
    );
    props.insert(
        "msg".into(),
        json!({
            "description": "A user-space record's message: its own fields.",
            "anyOf": [{"$ref": format!("#/$defs/{def}")}, {"type": "null"}]
        }),
    );
    for (t, f, k) in fields::EXCEPTIONS {
        if Some(*t) == rtype {
            props.insert(String::from_utf8_lossy(f).into_owned(), kind_schema(*k));
        }
    }
    json!({
        "type": "object",
        "properties": props,
        "additionalProperties": {
            "description": "Every other field (and every UPPER-CASE translation): a string as written (escaped ones decoded), or null for (null), (none), ?.",
            "type": ["string", "null"]
        }
    })
}

fn one_or_many(def: &str) -> Value {
    let r = json!({"$ref": format!("#/$defs/{def}")});
    json!({"anyOf": [r, {"type": "array", "items": r}]})
}

/// The schema as the field table makes it.
fn generated() -> Value {
    let mut defs = Map::new();
    defs.insert("record".into(), record("record", None));
    let mut records = Map::new();
    let mut exception_types: Vec<u16> = fields::EXCEPTIONS.iter().map(|e| e.0).collect();
    exception_types.dedup();
    for t in exception_types {
        let name = pauditd_engine::types::name_of(t).expect("a known type");
        let def = format!("record_{name}");
        defs.insert(def.clone(), record(&def, Some(t)));
        records.insert(name.into(), one_or_many(&def));
    }
    defs.insert(
        "sockaddr".into(),
        json!({
            "type": "object",
            "properties": {
                "family": {"type": "string"},
                "addr": {"type": "string"},
                "port": {"type": "integer"},
                "flowinfo": {"type": "integer"},
                "scope_id": {"type": "integer"},
                "path": {"type": "string"},
                "pid": {"type": "integer"},
                "groups": {"type": "integer"}
            },
            "additionalProperties": false
        }),
    );
    let s = |d: &str| json!({"description": d, "type": "string"});
    let int = |d: &str| json!({"description": d, "type": "integer"});
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": format!("pauditd enriched event, schema version {}", pauditd_sinks::enriched::VERSION),
        "description": "One event per line (`format: enriched`). Generated from the encoder's field table (sinks/src/enriched/fields.rs, after audit-userspace's auparse/typetab.h and interpret.c) by tests/enriched_schema.rs; see docs/formats.md.",
        "type": "object",
        "required": ["version", "sequence", "timestamp", "rule_key", "records"],
        "properties": {
            "version": {"const": pauditd_sinks::enriched::VERSION},
            "sequence": int("The audit serial."),
            "timestamp": s("SECONDS.MILLIS as the record header wrote it."),
            "time": s("The timestamp in RFC 3339, UTC (left out when the header's is not a time)."),
            "rule_key": {"description": "The SYSCALL record's key; null when none.", "type": ["string", "null"]},
            "container": {
                "type": "object",
                "properties": {"id": {"type": "string"}, "runtime": {"type": "string"}, "pod_uid": {"type": "string"}, "qos": {"type": "string"}},
                "additionalProperties": false
            },
            "service": s("The systemd unit of the event's process."),
            "parent": {
                "type": "object",
                "properties": {
                    "pid": {"type": "integer"}, "ppid": {"type": "integer"}, "comm": {"type": "string"},
                    "exe": {"type": "string"}, "start_time": {"type": "integer"}, "exec_event": {"type": "integer"}
                },
                "additionalProperties": false
            },
            "records": {
                "description": "One key per record type (libaudit's name, or UNKNOWN[n]): an object, or an array when the type occurs more than once (always for PATH).",
                "type": "object",
                "properties": records,
                "additionalProperties": one_or_many("record")
            }
        },
        "additionalProperties": false,
        "$defs": defs
    })
}

fn load_schema() -> Value {
    serde_json::from_str(&std::fs::read_to_string(schema_path()).unwrap()).unwrap()
}

#[test]
fn the_schema_file_is_the_one_the_field_table_makes() {
    let mut text = serde_json::to_string_pretty(&generated()).unwrap();
    text.push('\n');
    if std::env::var_os("UPDATE_GOLDENS").is_some() {
        std::fs::create_dir_all(schema_path().parent().unwrap()).unwrap();
        std::fs::write(schema_path(), &text).unwrap();
        return;
    }
    let file = std::fs::read_to_string(schema_path()).unwrap_or_default();
    assert!(
        file == text,
        "{} is not what the field table makes: run `make goldens` and review the diff",
        schema_path().display()
    );
}

fn check_lines(schema: &Value, what: &str, text: &str) -> usize {
    let mut n = 0;
    for (i, line) in text.lines().enumerate() {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{what} line {}: {e}", i + 1));
        let errors = schema::validate(schema, &v);
        assert!(
            errors.is_empty(),
            "{what} line {}: {}",
            i + 1,
            errors.join("; ")
        );
        n += 1;
    }
    n
}

#[test]
fn every_enriched_golden_fits_the_schema() {
    let schema = load_schema();
    let dir = root().join("tests/data/enriched");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|x| x == "json") {
            n += check_lines(
                &schema,
                &p.display().to_string(),
                &std::fs::read_to_string(&p).unwrap(),
            );
        }
    }
    assert!(n >= 20, "only {n} golden events");
}

#[test]
fn the_schema_refuses_a_field_whose_type_follows_its_value() {
    let schema = load_schema();
    let ok = json!({"version": pauditd_sinks::enriched::VERSION, "sequence": 1, "timestamp": "1.000", "rule_key": null,
        "records": {"SYSCALL": {"arch": "40000003", "per": "400000", "syscall": 11, "auid": null, "RAW": {"auid": "vagrant"}},
                    "ADD_USER": {"msg": {"id": 1002, "ID": "user", "text": "job-7: activity start"}},
                    "AVC": {"family": "inet6"}, "NETFILTER_CFG": {"family": 2}}});
    assert_eq!(schema::validate(&schema, &ok), Vec::<String>::new());
    for (bad, why) in [
        (json!({"arch": 40000003}), "arch as a number"),
        (json!({"per": 400000}), "per as a number"),
        (json!({"syscall": "execve"}), "syscall as a string"),
        (json!({"msg": {"id": "\u{10}\u{2}"}}), "id hex-decoded"),
        (json!({"SADDR": "{ saddr_fam=inet }"}), "SADDR as a string"),
    ] {
        let mut v = ok.clone();
        v["records"]["SYSCALL"] = bad;
        assert!(!schema::validate(&schema, &v).is_empty(), "{why} passed");
    }
}

/// Every corpus log (all of `../shared/corpus`, every record type kept), replayed in the
/// enriched format, fits the schema.
#[test]
fn every_corpus_log_replayed_enriched_fits_the_schema() {
    let corpus = root().join("../shared/corpus");
    if !corpus.is_dir() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "the shared corpus must be at {} in CI",
            corpus.display()
        );
        eprintln!("skipping the corpus schema check: no {}", corpus.display());
        return;
    }
    let schema = load_schema();
    let tmp = std::env::temp_dir().join(format!("pauditd-schema-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let cfg = tmp.join("all.yaml");
    std::fs::write(
        &cfg,
        "output: {stdout: {enabled: true}}\nevents: {min: 1000, max: 2999}\n",
    )
    .unwrap();
    let mut files = Vec::new();
    walk(&corpus, &mut files);
    files.sort();
    let (mut logs, mut events) = (0, 0);
    for f in files {
        let out = Command::new(env!("CARGO_BIN_EXE_pauditd"))
            .args(["replay", "--format", "enriched", "-config"])
            .arg(&cfg)
            .arg("--passwd")
            .arg(root().join("tests/data/passwd"))
            .arg("--group")
            .arg(root().join("tests/data/group"))
            .arg(&f)
            .env("PAUDITD_LOG", "error")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            f.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        events += check_lines(
            &schema,
            &f.display().to_string(),
            &String::from_utf8_lossy(&out.stdout),
        );
        logs += 1;
    }
    let _ = std::fs::remove_dir_all(&tmp);
    eprintln!("{logs} corpus files, {events} enriched events fit the schema");
    assert!(
        logs >= 300 && events >= 5000,
        "{logs} files, {events} events"
    );
}

/// Input files of the corpus: not the other tools' goldens nor the prose.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            walk(&p, out);
        } else if !p.extension().is_some_and(|x| {
            ["json", "golden", "out", "md", "ref"].contains(&x.to_str().unwrap_or(""))
        }) {
            out.push(p);
        }
    }
}
