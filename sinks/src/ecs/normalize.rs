//! go-libaudit's normalizations: what each syscall and record type means (action, actor,
//! object, ECS category and type), read from its own table (`normalizations.yaml`, embedded
//! unchanged, Apache-2.0).
//!
//! Owns loading and looking up that table. The table is constant data: it is read once,
//! on first use by an `ecs` output, and shared read-only. It must never be edited here to
//! change a meaning: a difference from auditbeat belongs in the README, not in a patched copy.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::Deserialize;

const YAML: &str = include_str!("normalizations.yaml");

/// A field list that YAML writes as one string or a list.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(from = "OneOrMany")]
pub struct Strings(pub Vec<String>);

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl std::convert::From<OneOrMany> for Strings {
    fn from(v: OneOrMany) -> Self {
        match v {
            OneOrMany::One(s) => Strings(vec![s]),
            OneOrMany::Many(v) => Strings(v),
        }
    }
}

/// Where a mapping reads its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum From {
    SubjectPrimary,
    SubjectSecondary,
    ObjectPrimary,
    ObjectSecondary,
    Data(String),
    Uid(String),
}

/// Which ECS entity a mapping sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum To {
    User,
    UserEffective,
    UserTarget,
    UserChanges,
    Group,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMapping {
    from: String,
    to: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEcs {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    category: Strings,
    #[serde(default, rename = "type")]
    typ: Strings,
    #[serde(default)]
    mappings: Vec<RawMapping>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNorm {
    #[serde(default)]
    subject_primary: Strings,
    #[serde(default)]
    subject_secondary: Strings,
    #[serde(default)]
    action: String,
    #[serde(default)]
    object_primary: Strings,
    #[serde(default)]
    object_secondary: Strings,
    #[serde(default)]
    object_what: String,
    #[serde(default)]
    object_path_index: usize,
    #[serde(default)]
    how: Strings,
    #[serde(default)]
    record_types: Strings,
    #[serde(default)]
    syscalls: Strings,
    #[serde(default)]
    source_ip: Strings,
    #[serde(default)]
    has_fields: Strings,
    #[serde(default)]
    ecs: RawEcs,
    #[serde(default)]
    #[allow(dead_code)]
    description: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTable {
    #[allow(dead_code)]
    macros: serde_yaml::Value,
    normalizations: Vec<RawNorm>,
}

/// One normalization (go-libaudit's `Normalization`).
#[derive(Debug)]
pub struct Normalization {
    pub subject_primary: Vec<String>,
    pub subject_secondary: Vec<String>,
    pub action: String,
    pub object_primary: Vec<String>,
    pub object_secondary: Vec<String>,
    pub object_what: String,
    pub object_path_index: usize,
    pub how: Vec<String>,
    pub source_ip: Vec<String>,
    pub has_fields: Vec<String>,
    pub kind: String,
    pub category: Vec<String>,
    pub typ: Vec<String>,
    pub mappings: Vec<(From, To)>,
}

/// The loaded table: normalizations by syscall name and by record type name.
#[derive(Debug)]
pub struct Table {
    norms: Vec<Normalization>,
    syscalls: HashMap<String, usize>,
    record_types: HashMap<String, Vec<usize>>,
}

impl Table {
    /// Parse a table in go-libaudit's format; every rule go-libaudit checks is checked.
    pub fn parse(yaml: &str) -> Result<Table, String> {
        let mut v: serde_yaml::Value = serde_yaml::from_str(yaml).map_err(|e| e.to_string())?;
        v.apply_merge().map_err(|e| e.to_string())?;
        let raw: RawTable = serde_yaml::from_value(v).map_err(|e| e.to_string())?;
        let mut t = Table {
            norms: Vec::new(),
            syscalls: HashMap::new(),
            record_types: HashMap::new(),
        };
        for (i, n) in raw.normalizations.into_iter().enumerate() {
            for s in &n.syscalls.0 {
                if t.syscalls.insert(s.clone(), i).is_some() {
                    return Err(format!("duplicate mappings for syscall {s}"));
                }
            }
            for r in &n.record_types.0 {
                t.record_types.entry(r.clone()).or_default().push(i);
            }
            let mut mappings = Vec::new();
            for m in &n.ecs.mappings {
                mappings.push((from_ref(&m.from)?, to_ref(&m.to)?));
            }
            t.norms.push(Normalization {
                subject_primary: n.subject_primary.0,
                subject_secondary: n.subject_secondary.0,
                action: n.action,
                object_primary: n.object_primary.0,
                object_secondary: n.object_secondary.0,
                object_what: n.object_what,
                object_path_index: n.object_path_index,
                how: n.how.0,
                source_ip: n.source_ip.0,
                has_fields: n.has_fields.0,
                kind: n.ecs.kind,
                category: n.ecs.category.0,
                typ: n.ecs.typ.0,
                mappings,
            });
        }
        for (r, ids) in &t.record_types {
            if ids.len() > 1 && ids.iter().any(|i| t.norms[*i].has_fields.is_empty()) {
                return Err(format!(
                    "duplicate mappings for record_type {r} without has_fields qualifier"
                ));
            }
        }
        Ok(t)
    }

    /// The table shipped with pauditd (go-libaudit's), parsed on first use.
    pub fn builtin() -> &'static Table {
        static TABLE: OnceLock<Table> = OnceLock::new();
        TABLE.get_or_init(|| {
            // Checked by a unit test: the embedded table always parses.
            Table::parse(YAML).expect("embedded normalizations.yaml parses")
        })
    }

    /// The normalization for a syscall name, or the catch-all `*`.
    pub fn syscall(&self, name: &[u8]) -> Option<&Normalization> {
        let name = std::str::from_utf8(name).ok();
        name.and_then(|n| self.syscalls.get(n))
            .or_else(|| self.syscalls.get("*"))
            .map(|i| &self.norms[*i])
    }

    /// The normalization for a record type: with several, the last whose `has_fields` are
    /// all present (go-libaudit keeps looping after a match).
    pub fn record_type(&self, name: &str, has: impl Fn(&str) -> bool) -> Option<&Normalization> {
        let ids = self.record_types.get(name)?;
        match ids.len() {
            0 => None,
            1 => Some(&self.norms[ids[0]]),
            _ => ids
                .iter()
                .map(|i| &self.norms[*i])
                .filter(|n| n.has_fields.iter().all(|f| has(f)))
                .last(),
        }
    }

    /// Whether two lookups gave the same normalization.
    pub fn same(a: &Normalization, b: &Normalization) -> bool {
        std::ptr::eq(a, b)
    }
}

fn from_ref(s: &str) -> Result<From, String> {
    Ok(match s {
        "subject.primary" => From::SubjectPrimary,
        "subject.secondary" => From::SubjectSecondary,
        "object.primary" => From::ObjectPrimary,
        "object.secondary" => From::ObjectSecondary,
        _ => match s.split_once('.') {
            Some(("data", k)) => From::Data(k.to_string()),
            Some(("uid", k)) => From::Uid(k.to_string()),
            _ => {
                return Err(format!(
                    "field '{s}' is not a valid from-reference for ECS mapping"
                ))
            }
        },
    })
}

fn to_ref(s: &str) -> Result<To, String> {
    Ok(match s {
        "user" => To::User,
        "user.effective" => To::UserEffective,
        "user.target" => To::UserTarget,
        "user.changes" => To::UserChanges,
        "group" => To::Group,
        _ => {
            return Err(format!(
                "field '{s}' is not a valid to-reference for ECS mapping"
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_table_parses_with_merges() {
        let t = Table::parse(YAML).unwrap();
        // `creat` merges `*ecs-file` and overrides its type.
        let n = t.syscall(b"creat").unwrap();
        assert_eq!(n.action, "opened-file");
        assert_eq!(n.category, ["file"]);
        assert_eq!(n.typ, ["creation"]);
        // Unknown syscalls take the catch-all.
        assert_eq!(t.syscall(b"no_such_call").unwrap().category, ["process"]);
        // A record type normalization with its mappings from a macro.
        let n = t.record_type("USER_LOGIN", |_| true).unwrap();
        assert!(!n.mappings.is_empty(), "{n:?}");
        assert!(t.record_type("NO_SUCH_TYPE", |_| true).is_none());
    }

    #[test]
    fn table_errors_are_reported() {
        let dup = "macros: []\nnormalizations:\n  - syscalls: [a]\n  - syscalls: [a]\n";
        assert!(Table::parse(dup).unwrap_err().contains("duplicate"));
        let bad = "macros: []\nnormalizations:\n  - ecs:\n      mappings:\n        - {from: x.y, to: user}\n";
        assert!(Table::parse(bad).unwrap_err().contains("x.y"));
        let unknown = "macros: []\nnormalizations:\n  - nonsense: 1\n";
        assert!(Table::parse(unknown).is_err());
    }
}
