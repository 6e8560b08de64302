//! A JSON Schema validator for the keywords the enriched schema uses (draft 2020-12:
//! `type`, `const`, `properties`, `additionalProperties`, `items`, `required`, `anyOf`,
//! `$ref` to `#/$defs/...`; annotations `$schema`, `$id`, `title`, `description`, `$defs`).
//! Any other keyword is an error, so the schema cannot say more than this checks.

use serde_json::Value;

const KNOWN: &[&str] = &[
    "$schema",
    "$id",
    "title",
    "description",
    "$defs",
    "type",
    "const",
    "properties",
    "additionalProperties",
    "items",
    "required",
    "anyOf",
    "$ref",
];

/// Every violation of `schema` (the whole document, for `$ref`s) by `v`, with its path.
pub fn validate(root: &Value, v: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    check(root, root, v, "", &mut errors);
    errors
}

fn type_ok(t: &str, v: &Value) -> bool {
    match t {
        "null" => v.is_null(),
        "boolean" => v.is_boolean(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "string" => v.is_string(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        _ => false,
    }
}

fn check(root: &Value, schema: &Value, v: &Value, path: &str, errors: &mut Vec<String>) {
    if schema == &Value::Bool(true) {
        return;
    }
    let Some(s) = schema.as_object() else {
        errors.push(format!("{path}: schema is not an object: {schema}"));
        return;
    };
    for k in s.keys() {
        if !KNOWN.contains(&k.as_str()) {
            errors.push(format!("{path}: unsupported keyword {k}"));
        }
    }
    if let Some(r) = s.get("$ref").and_then(Value::as_str) {
        match r
            .strip_prefix("#/$defs/")
            .and_then(|name| root["$defs"].get(name))
        {
            Some(target) => check(root, target, v, path, errors),
            None => errors.push(format!("{path}: unresolved $ref {r}")),
        }
    }
    if let Some(t) = s.get("type") {
        let ok = match t {
            Value::String(t) => type_ok(t, v),
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).any(|t| type_ok(t, v)),
            _ => false,
        };
        if !ok {
            errors.push(format!("{path}: {v} is not of type {t}"));
            return;
        }
    }
    if let Some(c) = s.get("const") {
        if c != v {
            errors.push(format!("{path}: {v} is not {c}"));
        }
    }
    if let Some(any) = s.get("anyOf").and_then(Value::as_array) {
        let fits = any.iter().any(|alt| {
            let mut e = Vec::new();
            check(root, alt, v, path, &mut e);
            e.is_empty()
        });
        if !fits {
            errors.push(format!("{path}: {v} fits none of anyOf"));
        }
    }
    if let Some(o) = v.as_object() {
        let props = s.get("properties").and_then(Value::as_object);
        for req in s
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(r) = req.as_str() {
                if !o.contains_key(r) {
                    errors.push(format!("{path}: {r} is required"));
                }
            }
        }
        for (k, fv) in o {
            let p = format!("{path}/{k}");
            match props.and_then(|p| p.get(k)) {
                Some(ps) => check(root, ps, fv, &p, errors),
                None => match s.get("additionalProperties") {
                    Some(Value::Bool(false)) => errors.push(format!("{p}: not allowed")),
                    Some(extra) => check(root, extra, fv, &p, errors),
                    None => {}
                },
            }
        }
    }
    if let (Some(items), Some(a)) = (s.get("items"), v.as_array()) {
        for (i, item) in a.iter().enumerate() {
            check(root, items, item, &format!("{path}[{i}]"), errors);
        }
    }
}
