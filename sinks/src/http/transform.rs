//! Request-body transformers: what the HTTP output sends for one event.
//!
//! Owns pauditd's `response_body_transformer`s: `noop` (the event line as is) and
//! `notification-service` (the event wrapped for Pantheon's notification service, topic from
//! the rule key, events without a key skipped). It must never touch the network; the worker
//! calls it once per event, with the request's trace id.

use std::collections::BTreeMap;

use crate::pauditd_json::write_str;

/// What became of one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transformed {
    /// The body was appended to `out`.
    Send,
    /// Nothing to send; the reason is a metric name suffix (pauditd counts it).
    Skip(&'static str),
}

/// `event` is one encoded event line, newline included, exactly as the other outputs get it.
/// To add a transformer: implement this, give it a name in [`by_name`] and in the config's list.
pub trait Transform: Send + Sync {
    fn transform(&self, trace_id: &str, event: &[u8], out: &mut Vec<u8>) -> Transformed;
    /// A counter per topic or similar, `(metric name, event)`: `None` when the transformer
    /// keeps none.
    fn metric_for(&self, _event: &[u8]) -> Option<String> {
        None
    }
    /// Whether the body carries the request's trace id (otherwise no id is made for it).
    fn uses_trace_id(&self) -> bool {
        false
    }
}

/// pauditd's default: the body is the event line, trailing newline included.
pub struct Noop;

impl Transform for Noop {
    fn transform(&self, _trace_id: &str, event: &[u8], out: &mut Vec<u8>) -> Transformed {
        out.extend_from_slice(event);
        Transformed::Send
    }
}

/// `{"topic":KEY,"attributes":{...,"hostname":HOST,"trace_id":ID},"data":EVENT,"version":"1.0.0"}`
/// as Go's `json.Marshal` prints it: attributes sorted by key, no trailing newline.
pub struct NotificationService {
    hostname: String,
    /// Extra attributes from the config, keys lowercased as viper hands them to pauditd.
    extra: BTreeMap<String, String>,
}

impl NotificationService {
    pub fn new(short_hostname: &str, extra: &[(String, String)]) -> Self {
        NotificationService {
            hostname: short_hostname.to_string(),
            extra: extra
                .iter()
                .map(|(k, v)| (k.to_lowercase(), v.clone()))
                .collect(),
        }
    }
}

/// The topic as pauditd finds it: the regex `"rule_key":"(.*)"` on the encoded event, greedy,
/// so the text up to the last quote on the line; it is the raw (still JSON-escaped) text.
pub fn topic(event: &[u8]) -> Option<&[u8]> {
    const NEEDLE: &[u8] = b"\"rule_key\":\"";
    let start = memchr::memmem::find(event, NEEDLE)? + NEEDLE.len();
    let line = &event[start..];
    let line = &line[..memchr::memchr(b'\n', line).unwrap_or(line.len())];
    let end = memchr::memrchr(b'"', line)?;
    let t = &line[..end];
    // "(null)": rules set by other systems (SECCOMP, TTY); "rule_key": pauditd's own guard.
    (!(t.is_empty() || t == b"(null)" || t == b"rule_key")).then_some(t)
}

impl Transform for NotificationService {
    fn uses_trace_id(&self) -> bool {
        true
    }

    fn transform(&self, trace_id: &str, event: &[u8], out: &mut Vec<u8>) -> Transformed {
        let Some(topic) = topic(event) else {
            return Transformed::Skip("notif-service-transformer.topic.no-topic");
        };
        let data = event.strip_suffix(b"\n").unwrap_or(event);
        out.extend_from_slice(b"{\"topic\":");
        write_str(out, topic);
        out.extend_from_slice(b",\"attributes\":{");
        let mut attrs: BTreeMap<&str, &str> = self
            .extra
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        attrs.insert("hostname", &self.hostname);
        attrs.insert("trace_id", trace_id);
        for (i, (k, v)) in attrs.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_str(out, k.as_bytes());
            out.push(b':');
            write_str(out, v.as_bytes());
        }
        out.extend_from_slice(b"},\"data\":");
        out.extend_from_slice(data);
        out.extend_from_slice(b",\"version\":\"1.0.0\"}");
        Transformed::Send
    }

    fn metric_for(&self, event: &[u8]) -> Option<String> {
        topic(event).map(|t| format!("notif-service-transformer.topic.{}", metric_safe(t)))
    }
}

/// A topic as part of a statsd name: bytes statsd reserves (`:|@#`, whitespace, control,
/// non-ASCII) become `_` so one odd key cannot corrupt the datagram.
pub fn metric_safe(t: &[u8]) -> String {
    t.iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b"-_.".contains(&b) {
                b as char
            } else {
                '_'
            }
        })
        .collect()
}

/// The transformer a config names (`""` is `noop`, as in pauditd).
pub fn by_name(
    name: &str,
    short_hostname: &str,
    extra: &[(String, String)],
) -> Option<Box<dyn Transform>> {
    match name {
        "" | "noop" => Some(Box::new(Noop)),
        "notification-service" => Some(Box::new(NotificationService::new(short_hostname, extra))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EV: &[u8] = b"{\"sequence\":7,\"timestamp\":\"1.0\",\"messages\":[{\"type\":1300,\"data\":\"key=\\\"x\\\" \\u003c\"}],\"uid_map\":{},\"rule_key\":\"binding-file-ops\"}\n";

    #[test]
    fn noop_sends_the_line_with_its_newline() {
        let mut out = Vec::new();
        assert_eq!(Noop.transform("t", EV, &mut out), Transformed::Send);
        assert_eq!(out, EV);
    }

    #[test]
    fn notification_wraps_with_sorted_attributes_and_no_newline() {
        let t = NotificationService::new(
            "web1",
            &[
                ("Zone".into(), "a<b".into()),
                ("hostname".into(), "overridden".into()),
            ],
        );
        let mut out = Vec::new();
        assert_eq!(t.transform("abc-123", EV, &mut out), Transformed::Send);
        let want = format!(
            "{{\"topic\":\"binding-file-ops\",\"attributes\":{{\"hostname\":\"web1\",\"trace_id\":\"abc-123\",\"zone\":\"a\\u003cb\"}},\"data\":{},\"version\":\"1.0.0\"}}",
            std::str::from_utf8(&EV[..EV.len() - 1]).unwrap()
        );
        assert_eq!(String::from_utf8(out).unwrap(), want);
        assert_eq!(
            t.metric_for(EV).as_deref(),
            Some("notif-service-transformer.topic.binding-file-ops")
        );
    }

    #[test]
    fn events_without_a_usable_key_are_skipped() {
        let t = NotificationService::new("h", &[]);
        for key in ["", "(null)", "rule_key"] {
            let ev = format!("{{\"uid_map\":{{}},\"rule_key\":\"{key}\"}}\n");
            let mut out = Vec::new();
            assert_eq!(
                t.transform("t", ev.as_bytes(), &mut out),
                Transformed::Skip("notif-service-transformer.topic.no-topic"),
                "{key:?}"
            );
            assert!(out.is_empty());
        }
    }

    #[test]
    fn topic_is_the_raw_escaped_text_and_metric_names_are_sanitized() {
        let ev = b"{\"rule_key\":\"a\\u0001b:c|d\"}\n";
        assert_eq!(topic(ev), Some(&b"a\\u0001b:c|d"[..]));
        assert_eq!(metric_safe(topic(ev).unwrap()), "a_u0001b_c_d");
        let mut out = Vec::new();
        NotificationService::new("h", &[]).transform("t", ev, &mut out);
        assert!(out.starts_with(b"{\"topic\":\"a\\\\u0001b:c|d\""));
    }
}
