//! Reading typed values out of a YAML tree the way pauditd's viper/cast would.
//!
//! Owns the leniency pauditd users rely on (numbers given as strings, `0600` as octal, `"3"`
//! for an int, `true`/`"t"`/`"1"` for a bool) and the strictness they deserve (a wrong type or
//! out-of-range value is an error naming the key path; an unknown key is a warning naming it).
//! It collects every problem instead of stopping at the first. It must never panic on any
//! YAML document.

use std::time::Duration;

use serde_yaml::{Mapping, Value};

use crate::FieldError;

/// Collects errors and warnings while a config tree is read.
#[derive(Default)]
pub struct Reader {
    pub errors: Vec<FieldError>,
    pub warnings: Vec<String>,
    /// Key paths the schema does not know (each also a warning).
    pub unknown: Vec<String>,
    /// Every key read, with its type and default, in reading order: the schema as the code
    /// applies it (`crate::schema` documents it from this).
    pub seen: Vec<SeenKey>,
}

/// One key as the reader read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenKey {
    /// Dotted path, list indices written `[]` (`filters[].regex`).
    pub path: String,
    /// `integer`, `number`, `boolean`, `string`, `duration`, `list of strings`, ...
    pub kind: &'static str,
    /// The default, as YAML would write it (empty: none).
    pub default: String,
    /// Allowed values beyond the type (`0..=65535`), if the reader checks a range.
    pub range: String,
}

/// A mapping in the tree, with its path and the keys the schema knows.
pub struct Section<'a> {
    pub path: String,
    map: Option<&'a Mapping>,
    known: Vec<&'static str>,
}

impl<'a> Section<'a> {
    pub fn root(map: Option<&'a Mapping>) -> Self {
        Section {
            path: String::new(),
            map,
            known: Vec::new(),
        }
    }

    pub fn key_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// Whether the key is present with a non-null value.
    /// Count `key` as understood (reported on by the caller) so `finish` does not warn.
    pub fn mark_known(&mut self, key: &'static str) {
        self.known.push(key);
    }

    pub fn has(&self, key: &str) -> bool {
        self.raw(key).is_some()
    }

    fn raw(&self, key: &str) -> Option<&'a Value> {
        self.map?.get(key).filter(|v| !v.is_null())
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{s:?}"),
        Value::Sequence(_) => "a list".into(),
        Value::Mapping(_) => "a mapping".into(),
        Value::Tagged(t) if t.tag == BIG_INT_TAG => match &t.value {
            Value::String(n) => n.clone(),
            other => describe(other),
        },
        Value::Tagged(t) => format!("a value tagged {}", t.tag),
    }
}

/// Go's `strconv.ParseInt(s, 0, 64)`: optional sign, `0x`/`0o`/`0b`/leading-`0` prefixes.
pub fn parse_go_int(s: &str) -> Option<i64> {
    let s = s.trim();
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let body = body.replace('_', "");
    let (radix, digits) =
        if let Some(d) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
            (16, d.to_string())
        } else if let Some(d) = body.strip_prefix("0o").or_else(|| body.strip_prefix("0O")) {
            (8, d.to_string())
        } else if let Some(d) = body.strip_prefix("0b").or_else(|| body.strip_prefix("0B")) {
            (2, d.to_string())
        } else if body.len() > 1 && body.starts_with('0') {
            (8, body[1..].to_string())
        } else {
            (10, body)
        };
    if digits.is_empty() || digits.starts_with(['+', '-']) {
        return None;
    }
    let v = i64::from_str_radix(&digits, radix).ok()?;
    Some(if neg { -v } else { v })
}

/// Go's `time.ParseDuration` for the units operators use (ns, us, µs, ms, s, m, h).
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = s;
    let mut total = 0f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_end == 0 {
            return None;
        }
        let n: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_end..];
        total += n * scale;
    }
    Some(Duration::from_secs_f64(total))
}

impl Reader {
    fn error(&mut self, path: String, message: impl Into<String>) {
        self.errors.push(FieldError {
            path,
            message: message.into(),
        });
    }

    /// A sub-mapping (absent or null reads as empty).
    pub fn section<'a>(&mut self, parent: &mut Section<'a>, key: &'static str) -> Section<'a> {
        parent.known.push(key);
        let path = parent.key_path(key);
        let map = match parent.raw(key) {
            None => None,
            Some(Value::Mapping(m)) => Some(m),
            Some(other) => {
                self.error(
                    path.clone(),
                    format!("must be a mapping, got {}", describe(other)),
                );
                None
            }
        };
        Section {
            path,
            map,
            known: Vec::new(),
        }
    }

    /// Warn about every key of `s` the schema did not ask for.
    pub fn finish(&mut self, s: Section<'_>) {
        let Some(map) = s.map else { return };
        for k in map.keys() {
            let name = match k {
                Value::String(k) => k.clone(),
                other => describe(other),
            };
            if !s.known.iter().any(|kn| *kn == name) {
                self.warnings
                    .push(format!("unknown key `{}` (ignored)", s.key_path(&name)));
                self.unknown.push(s.key_path(&name));
            }
        }
    }

    /// Record a key read (once per path).
    fn note(
        &mut self,
        s: &Section<'_>,
        key: &str,
        kind: &'static str,
        default: String,
        range: String,
    ) {
        let mut path = String::new();
        let mut in_index = false;
        for c in s.key_path(key).chars() {
            match c {
                '[' => {
                    in_index = true;
                    path.push_str("[]");
                }
                ']' => in_index = false,
                _ if in_index => {}
                c => path.push(c),
            }
        }
        if !self.seen.iter().any(|k| k.path == path) {
            self.seen.push(SeenKey {
                path,
                kind,
                default,
                range,
            });
        }
    }

    fn value<'a>(&mut self, s: &mut Section<'a>, key: &'static str) -> Option<&'a Value> {
        s.known.push(key);
        s.raw(key)
    }

    pub fn int(
        &mut self,
        s: &mut Section<'_>,
        key: &'static str,
        default: i64,
        min: i64,
        max: i64,
    ) -> i64 {
        let range = if (min, max) == (i64::MIN, i64::MAX) {
            String::new()
        } else {
            format!("{min}..={max}")
        };
        self.note(s, key, "integer", default.to_string(), range);
        let path = s.key_path(key);
        let Some(v) = self.value(s, key) else {
            return default;
        };
        let n = match v {
            Value::Number(n) => n.as_i64(),
            Value::String(t) => parse_go_int(t),
            Value::Tagged(t) if t.tag == BIG_INT_TAG => {
                self.error(
                    path,
                    format!("{} is out of range ({min}..={max})", describe(v)),
                );
                return default;
            }
            _ => None,
        };
        match n {
            Some(n) if (min..=max).contains(&n) => n,
            Some(n) => {
                self.error(path, format!("{n} is out of range ({min}..={max})"));
                default
            }
            None => {
                self.error(path, format!("must be an integer, got {}", describe(v)));
                default
            }
        }
    }

    pub fn float(
        &mut self,
        s: &mut Section<'_>,
        key: &'static str,
        default: f64,
        ok: fn(f64) -> bool,
        rule: &str,
    ) -> f64 {
        self.note(s, key, "number", default.to_string(), rule.to_string());
        let path = s.key_path(key);
        let Some(v) = self.value(s, key) else {
            return default;
        };
        let n = match v {
            Value::Number(n) => n.as_f64(),
            Value::String(t) => t.trim().parse().ok(),
            _ => None,
        };
        match n {
            Some(n) if ok(n) => n,
            Some(n) => {
                self.error(path, format!("{n} is not {rule}"));
                default
            }
            None => {
                self.error(path, format!("must be a number, got {}", describe(v)));
                default
            }
        }
    }

    pub fn bool(&mut self, s: &mut Section<'_>, key: &'static str, default: bool) -> bool {
        self.note(s, key, "boolean", default.to_string(), String::new());
        let path = s.key_path(key);
        let Some(v) = self.value(s, key) else {
            return default;
        };
        let b = match v {
            Value::Bool(b) => Some(*b),
            // Go's strconv.ParseBool, which viper applies to strings.
            Value::String(t) => match t.as_str() {
                "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
                "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
                _ => None,
            },
            Value::Number(n) => n.as_i64().map(|n| n != 0),
            _ => None,
        };
        b.unwrap_or_else(|| {
            self.error(path, format!("must be true or false, got {}", describe(v)));
            default
        })
    }

    pub fn string(&mut self, s: &mut Section<'_>, key: &'static str, default: &str) -> String {
        self.note(s, key, "string", default.to_string(), String::new());
        let path = s.key_path(key);
        match self.value(s, key) {
            None => default.to_string(),
            Some(Value::String(t)) => t.clone(),
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::Bool(b)) => b.to_string(),
            Some(other) => {
                self.error(path, format!("must be a string, got {}", describe(other)));
                default.to_string()
            }
        }
    }

    pub fn duration(
        &mut self,
        s: &mut Section<'_>,
        key: &'static str,
        default: Duration,
    ) -> Duration {
        self.note(s, key, "duration", go_duration(default), String::new());
        let path = s.key_path(key);
        let Some(v) = self.value(s, key) else {
            return default;
        };
        match v {
            Value::String(t) => parse_go_duration(t).unwrap_or_else(|| {
                self.error(
                    path,
                    format!("{t:?} is not a duration (e.g. 500ms, 10s, 1m)"),
                );
                default
            }),
            other => {
                self.error(
                    path,
                    format!(
                        "must be a duration with a unit (e.g. 10s), got {}",
                        describe(other)
                    ),
                );
                default
            }
        }
    }

    pub fn string_list(&mut self, s: &mut Section<'_>, key: &'static str) -> Vec<String> {
        self.note(s, key, "list of strings", "[]".into(), String::new());
        let path = s.key_path(key);
        match self.value(s, key) {
            None => Vec::new(),
            Some(Value::Sequence(items)) => items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| match item {
                    Value::String(t) => Some(t.clone()),
                    Value::Null => Some(String::new()),
                    Value::Number(n) => Some(n.to_string()),
                    other => {
                        self.error(
                            format!("{path}[{i}]"),
                            format!("must be a string, got {}", describe(other)),
                        );
                        None
                    }
                })
                .collect(),
            Some(other) => {
                self.error(
                    path,
                    format!("must be a list of strings, got {}", describe(other)),
                );
                Vec::new()
            }
        }
    }

    pub fn string_map(&mut self, s: &mut Section<'_>, key: &'static str) -> Vec<(String, String)> {
        self.note(s, key, "mapping of strings", "{}".into(), String::new());
        let path = s.key_path(key);
        match self.value(s, key) {
            None => Vec::new(),
            Some(Value::Mapping(m)) => m
                .iter()
                .filter_map(|(k, v)| {
                    let k = match k {
                        Value::String(k) => k.clone(),
                        other => describe(other),
                    };
                    match v {
                        Value::String(t) => Some((k, t.clone())),
                        Value::Number(n) => Some((k, n.to_string())),
                        Value::Bool(b) => Some((k, b.to_string())),
                        other => {
                            self.error(
                                format!("{path}.{k}"),
                                format!("must be a string, got {}", describe(other)),
                            );
                            None
                        }
                    }
                })
                .collect(),
            Some(other) => {
                self.error(
                    path,
                    format!("must be a mapping of strings, got {}", describe(other)),
                );
                Vec::new()
            }
        }
    }

    /// A list of mappings, each handed to `each` as a section named `key[i]`.
    pub fn list_of_sections<'a, T>(
        &mut self,
        s: &mut Section<'a>,
        key: &'static str,
        mut each: impl FnMut(&mut Reader, Section<'a>) -> Option<T>,
    ) -> Vec<T> {
        self.note(s, key, "list of mappings", "[]".into(), String::new());
        let path = s.key_path(key);
        match self.value(s, key) {
            None => Vec::new(),
            Some(Value::Sequence(items)) => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    let p = format!("{path}[{i}]");
                    match item {
                        Value::Mapping(m) => {
                            let sec = Section {
                                path: p,
                                map: Some(m),
                                known: Vec::new(),
                            };
                            out.extend(each(self, sec));
                        }
                        other => {
                            self.error(p, format!("must be a mapping, got {}", describe(other)))
                        }
                    }
                }
                out
            }
            Some(other) => {
                self.error(path, format!("must be a list, got {}", describe(other)));
                Vec::new()
            }
        }
    }

    pub fn report(&mut self, path: String, message: impl Into<String>) {
        self.error(path, message);
    }
}

/// `10s`, `500ms`, `1m30s`: a duration as Go writes it (whole milliseconds).
pub fn go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let s = ms / 1000;
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, 0, 0) => format!("{h}h"),
        (h, m, s) => format!("{h}h{m}m{s}s"),
    }
}

/// The tag given to integers too large for a YAML number (`99999999999999999999`), so they
/// are reported as out of range with every other error instead of failing the parse.
pub const BIG_INT_TAG: &str = "!pauditd-big-integer";

/// A YAML document read into a [`Value`], where `serde_yaml::Value` itself would refuse the
/// whole file over one integer beyond 64 bits.
pub struct Doc(pub Value);

impl<'de> serde::Deserialize<'de> for Doc {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Doc, D::Error> {
        d.deserialize_any(DocVisitor)
    }
}

struct DocVisitor;

fn big(v: impl ToString) -> Value {
    Value::Tagged(Box::new(serde_yaml::value::TaggedValue {
        tag: serde_yaml::value::Tag::new(BIG_INT_TAG),
        value: Value::String(v.to_string()),
    }))
}

impl<'de> serde::de::Visitor<'de> for DocVisitor {
    type Value = Doc;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Doc, E> {
        Ok(Doc(Value::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Doc, E> {
        Ok(Doc(Value::Number(v.into())))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Doc, E> {
        Ok(Doc(Value::Number(v.into())))
    }
    fn visit_i128<E>(self, v: i128) -> Result<Doc, E> {
        Ok(Doc(big(v)))
    }
    fn visit_u128<E>(self, v: u128) -> Result<Doc, E> {
        Ok(Doc(big(v)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Doc, E> {
        Ok(Doc(Value::Number(v.into())))
    }
    fn visit_str<E>(self, v: &str) -> Result<Doc, E> {
        Ok(Doc(Value::String(v.to_string())))
    }
    fn visit_string<E>(self, v: String) -> Result<Doc, E> {
        Ok(Doc(Value::String(v)))
    }
    fn visit_unit<E>(self) -> Result<Doc, E> {
        Ok(Doc(Value::Null))
    }
    fn visit_none<E>(self) -> Result<Doc, E> {
        Ok(Doc(Value::Null))
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Doc, D::Error> {
        serde::Deserialize::deserialize(d)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Doc, A::Error> {
        let mut v = Vec::new();
        while let Some(Doc(x)) = a.next_element()? {
            v.push(x);
        }
        Ok(Doc(Value::Sequence(v)))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Doc, A::Error> {
        let mut m = Mapping::new();
        while let Some((Doc(k), Doc(v))) = a.next_entry()? {
            // YAML says keys are unique; a second value would silently win.
            if m.contains_key(&k) {
                return Err(serde::de::Error::custom(format_args!(
                    "duplicate key {}",
                    describe(&k)
                )));
            }
            m.insert(k, v);
        }
        Ok(Doc(Value::Mapping(m)))
    }
    fn visit_enum<A: serde::de::EnumAccess<'de>>(self, a: A) -> Result<Doc, A::Error> {
        use serde::de::VariantAccess;
        let (tag, variant): (String, _) = a.variant()?;
        let Doc(value) = variant.newtype_variant()?;
        Ok(Doc(Value::Tagged(Box::new(
            serde_yaml::value::TaggedValue {
                tag: serde_yaml::value::Tag::new(tag),
                value,
            },
        ))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_ints() {
        assert_eq!(parse_go_int("0600"), Some(0o600));
        assert_eq!(parse_go_int("0o600"), Some(0o600));
        assert_eq!(parse_go_int("0x1F"), Some(31));
        assert_eq!(parse_go_int("-12"), Some(-12));
        assert_eq!(parse_go_int("0"), Some(0));
        assert_eq!(parse_go_int("09"), None);
        assert_eq!(parse_go_int("abc"), None);
        assert_eq!(parse_go_int(""), None);
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_go_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_go_duration("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("10"), None);
        assert_eq!(parse_go_duration("s"), None);
        assert_eq!(parse_go_duration("10 parsecs"), None);
    }
}
