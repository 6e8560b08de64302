//! Prometheus: the same counters and gauges as statsd, served as `/metrics` in the text
//! exposition format (version 0.0.4) for a scraper.
//!
//! Owns the name mapping (`output.file.written` becomes
//! `pauditd_output_written_total{output="file"}`, `http_code.200` becomes
//! `pauditd_http_code_total{code="200"}`) and a minimal HTTP/1.1 server on its own thread.
//! The daemon publishes a fresh rendering once a second; a scrape only copies it, so it costs
//! the pipeline nothing. It must never block the caller of `publish` for longer than a string
//! swap, and never serve anything but `GET /metrics`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
#[error("metrics.prometheus: cannot listen on {address}: {error}")]
pub struct PrometheusError {
    address: String,
    error: std::io::Error,
}

pub struct PrometheusExporter {
    body: Arc<Mutex<String>>,
    pub address: std::net::SocketAddr,
}

impl PrometheusExporter {
    /// Listen on `address` (`host:port`; `:port` means loopback).
    pub fn start(address: &str) -> Result<PrometheusExporter, PrometheusError> {
        let addr = if address.starts_with(':') {
            format!("127.0.0.1{address}")
        } else {
            address.to_string()
        };
        let err = |error| PrometheusError {
            address: address.to_string(),
            error,
        };
        let listener = TcpListener::bind(&addr).map_err(err)?;
        let local = listener.local_addr().map_err(err)?;
        let body = Arc::new(Mutex::new(String::new()));
        let shared = body.clone();
        std::thread::Builder::new()
            .name("pauditd-prometheus".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    let Ok(mut conn) = conn else { continue };
                    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
                    let _ = conn.set_write_timeout(Some(Duration::from_secs(2)));
                    let mut line = String::new();
                    let mut reader = BufReader::new(&conn);
                    if reader.read_line(&mut line).is_err() {
                        continue;
                    }
                    // Headers up to the blank line (ignored).
                    let mut h = String::new();
                    while reader.read_line(&mut h).is_ok_and(|n| n > 2) {
                        h.clear();
                    }
                    let mut parts = line.split_whitespace();
                    let (method, target) = (parts.next(), parts.next().unwrap_or(""));
                    let path = target.split('?').next().unwrap_or("");
                    let resp = if method == Some("GET") && path == "/metrics" {
                        let body = shared.lock().unwrap_or_else(|e| e.into_inner()).clone();
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        )
                    } else {
                        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            .to_string()
                    };
                    let _ = conn.write_all(resp.as_bytes());
                }
            })
            .map_err(err)?;
        Ok(PrometheusExporter {
            body,
            address: local,
        })
    }

    /// Replace what scrapes see with these cumulative counters and current gauges.
    pub fn publish(&self, counters: &[(String, u64)], gauges: &[(String, u64)]) {
        let text = render(counters, gauges);
        *self.body.lock().unwrap_or_else(|e| e.into_inner()) = text;
    }
}

/// Characters Prometheus allows in a metric name.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `(family, labels)` for one statsd-style name.
fn family(name: &str) -> (String, Option<(&'static str, String)>) {
    if let Some(rest) = name.strip_prefix("output.") {
        if let Some((output, metric)) = rest.split_once('.') {
            return (
                format!("pauditd_output_{}", sanitize(metric)),
                Some(("output", output.to_string())),
            );
        }
    }
    if let Some(code) = name.strip_prefix("http_code.") {
        return ("pauditd_http_code".into(), Some(("code", code.to_string())));
    }
    if let Some(topic) = name.strip_prefix("notif-service-transformer.topic.") {
        return (
            "pauditd_notif_service_transformer_topic".into(),
            Some(("topic", topic.to_string())),
        );
    }
    (format!("pauditd_{}", sanitize(name)), None)
}

/// The text exposition of `counters` (each family suffixed `_total`) and `gauges`.
pub fn render(counters: &[(String, u64)], gauges: &[(String, u64)]) -> String {
    let mut families: BTreeMap<String, (&str, Vec<String>)> = BTreeMap::new();
    for (list, kind) in [(counters, "counter"), (gauges, "gauge")] {
        for (name, v) in list {
            let (mut fam, label) = family(name);
            if kind == "counter" && !fam.ends_with("_total") {
                fam.push_str("_total");
            }
            let sample = match label {
                Some((k, val)) => format!("{fam}{{{k}=\"{}\"}} {v}", escape_label(&val)),
                None => format!("{fam} {v}"),
            };
            families
                .entry(fam)
                .or_insert_with(|| (kind, Vec::new()))
                .1
                .push(sample);
        }
    }
    let mut out = String::new();
    for (fam, (kind, samples)) in families {
        out.push_str(&format!("# TYPE {fam} {kind}\n"));
        for s in samples {
            out.push_str(&s);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_labels_and_types() {
        let c = vec![
            ("messages.total".to_string(), 7),
            ("output.file.written".to_string(), 5),
            ("output.http.lost.queue_full".to_string(), 2),
            ("output.file.lost.queue_full".to_string(), 0),
            ("http_code.200".to_string(), 3),
            ("notif-service-transformer.topic.a\"b".to_string(), 1),
        ];
        let g = vec![("kernel.backlog".to_string(), 4)];
        let text = render(&c, &g);
        assert!(text.contains("# TYPE pauditd_messages_total counter\npauditd_messages_total 7\n"));
        assert!(text.contains("pauditd_output_written_total{output=\"file\"} 5\n"));
        assert!(text.contains(
            "# TYPE pauditd_output_lost_queue_full_total counter\npauditd_output_lost_queue_full_total{output=\"http\"} 2\npauditd_output_lost_queue_full_total{output=\"file\"} 0\n"
        ));
        assert!(text.contains("pauditd_http_code_total{code=\"200\"} 3\n"));
        assert!(text.contains("topic=\"a\\\"b\"} 1\n"));
        assert!(text.contains("# TYPE pauditd_kernel_backlog gauge\npauditd_kernel_backlog 4\n"));
        // One TYPE line per family.
        assert_eq!(
            text.matches("# TYPE pauditd_output_lost_queue_full_total")
                .count(),
            1
        );
    }
}
