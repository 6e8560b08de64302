//! The HTTP output against a real HTTP/1.1 server on loopback (tests/support/httpd.rs): plain
//! and TLS with a generated CA and client certificates, both transformers, trace ids,
//! keep-alive pooling, one try per write with exact reporting of what failed, the circuit
//! breaker, redirects not followed, batching and certificate rotation; and, through an
//! [`Output`], the full-queue policy and the shutdown deadline. Bodies are compared byte for
//! byte.

mod support;

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pauditd_engine::Event;
use pauditd_sinks::http::breaker::BreakerConfig;
use pauditd_sinks::http::client::{PoolConfig, TlsFiles};
use pauditd_sinks::http::transform::{self, Transform};
use pauditd_sinks::http::{HttpConfig, HttpSink};
use pauditd_sinks::output::{Deadline, LossReason, Output, OutputConfig, Overflow};
use pauditd_sinks::{Batch, Sink, SinkError};
use support::httpd::{Pki, Server};

/// Events `first..first+n`, with the rule key `key` (empty for none).
fn batch(first: i64, n: i64, key: &str) -> Batch {
    let mut b = Batch::default();
    for s in first..first + n {
        let mut e = Event::new(s, b"1700000000.5");
        e.push_message(1300, b"syscall=59 key=\"k\" <x>");
        e.set_rule_key(key.as_bytes());
        b.push_event(&e);
    }
    b
}

fn config(url: String, transform: Box<dyn Transform>) -> HttpConfig {
    HttpConfig {
        url,
        workers: 1,
        buffer_size: 100,
        batch_size: None,
        trace_header: Some("X-Trace-Id".into()),
        transform,
        debug: false,
        breaker: BreakerConfig::with_ratio(0.05),
        pool: PoolConfig {
            connections: 1,
            idle_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            tls: None,
        },
        cert_refresh: Duration::from_secs(60),
    }
}

/// The lines a failed write reports worth retrying, and those refused.
fn failure(r: Result<(), SinkError>, len: usize) -> (usize, usize) {
    match r {
        Ok(()) => (0, 0),
        Err(e) => {
            let f = e.failure(len);
            (f.retry.len(), f.rejected)
        }
    }
}

fn is_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.iter().map(|p| p.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
        && s.bytes().all(|b| b == b'-' || b.is_ascii_hexdigit())
}

#[test]
fn noop_posts_each_event_over_one_kept_alive_connection() {
    let server = Server::plain();
    let mut sink = HttpSink::start(config(
        server.url("http", "/audit?src=pauditd"),
        Box::new(transform::Noop),
    ))
    .unwrap();
    let b = batch(1, 5, "exec");
    sink.write_batch(&b).unwrap();
    sink.close();
    let reqs = server.requests();
    assert_eq!(reqs.len(), 5);
    let mut traces = Vec::new();
    for (r, line) in reqs.iter().zip(b.lines()) {
        assert_eq!(r.method, "POST");
        assert_eq!(r.target, "/audit?src=pauditd");
        assert_eq!(r.body, line, "the event line, newline included");
        assert_eq!(r.header("content-type"), Some("application/json"));
        let t = r.header("x-trace-id").unwrap().to_string();
        assert!(is_uuid(&t), "{t}");
        traces.push(t);
    }
    traces.sort();
    traces.dedup();
    assert_eq!(traces.len(), 5, "one trace id per request");
    assert_eq!(
        server.connections(),
        1,
        "keep-alive: one connection for all"
    );
    let st = sink.stats();
    assert_eq!(st.delivered.load(Relaxed), 5);
    assert_eq!(st.named("http_code.200"), 5);
    assert_eq!(st.take_latencies().len(), 5);
}

#[test]
fn notification_service_wraps_events_and_skips_keyless_ones() {
    let server = Server::plain();
    let t = transform::by_name(
        "notification-service",
        "web1",
        &[("env".into(), "prod".into())],
    )
    .unwrap();
    let mut sink = HttpSink::start(config(server.url("http", "/notify"), t)).unwrap();
    let keyed = batch(10, 2, "binding-file-ops");
    sink.write_batch(&keyed).unwrap();
    sink.write_batch(&batch(20, 1, "")).unwrap();
    sink.write_batch(&batch(21, 1, "(null)")).unwrap();
    sink.close();
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    for (r, line) in reqs.iter().zip(keyed.lines()) {
        let trace = r.header("x-trace-id").unwrap();
        let data = std::str::from_utf8(&line[..line.len() - 1]).unwrap();
        let want = format!(
            "{{\"topic\":\"binding-file-ops\",\"attributes\":{{\"env\":\"prod\",\"hostname\":\"web1\",\"trace_id\":\"{trace}\"}},\"data\":{data},\"version\":\"1.0.0\"}}"
        );
        assert_eq!(String::from_utf8(r.body.clone()).unwrap(), want);
    }
    let st = sink.stats();
    assert_eq!(
        st.named("notif-service-transformer.topic.binding-file-ops"),
        2
    );
    assert_eq!(st.named("notif-service-transformer.topic.no-topic"), 2);
    assert_eq!(st.skipped.load(Relaxed), 2);
    assert_eq!(st.delivered.load(Relaxed), 2);
}

#[test]
fn batch_size_sends_json_arrays() {
    let server = Server::plain();
    let mut cfg = config(server.url("http", "/bulk"), Box::new(transform::Noop));
    cfg.batch_size = Some(2);
    let mut sink = HttpSink::start(cfg).unwrap();
    let b = batch(1, 5, "k");
    sink.write_batch(&b).unwrap();
    sink.close();
    let reqs = server.requests();
    assert_eq!(reqs.len(), 3);
    let lines: Vec<&[u8]> = b.lines().collect();
    for (r, chunk) in reqs.iter().zip(lines.chunks(2)) {
        let items: Vec<String> = chunk
            .iter()
            .map(|l| String::from_utf8(l[..l.len() - 1].to_vec()).unwrap())
            .collect();
        assert_eq!(
            String::from_utf8(r.body.clone()).unwrap(),
            format!("[{}]\n", items.join(","))
        );
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v.as_array().unwrap().len(), chunk.len());
    }
    assert_eq!(sink.stats().delivered.load(Relaxed), 5);
}

#[test]
fn server_errors_open_the_breaker_then_a_probe_closes_it() {
    let server = Server::plain();
    server.set_status(500);
    let mut cfg = config(server.url("http", "/"), Box::new(transform::Noop));
    cfg.breaker = BreakerConfig {
        failure_ratio: 0.5,
        window: Duration::from_secs(30),
        min_observations: 4,
        cooldown: Duration::from_millis(300),
    };
    let mut sink = HttpSink::start(cfg).unwrap();
    let st = sink.stats();
    // One try per event: four reach the service, then the breaker opens and the other six
    // fail fast. All ten are reported worth retrying, none refused.
    assert_eq!(failure(sink.write_batch(&batch(1, 10, "k")), 10), (10, 0));
    assert_eq!(server.requests().len(), 4);
    assert_eq!(st.named("http_code.500"), 4);
    assert_eq!(st.breaker_opened.load(Relaxed), 1);
    assert_eq!(st.breaker_rejected.load(Relaxed), 6);
    assert_eq!(st.failed.load(Relaxed), 10);

    // The service recovers; after the cooldown one probe goes through and closes the breaker.
    server.set_status(200);
    std::thread::sleep(Duration::from_millis(350));
    sink.write_batch(&batch(100, 3, "k")).unwrap();
    sink.close();
    assert_eq!(st.delivered.load(Relaxed), 3);
    assert_eq!(server.requests().len(), 7);
    assert_eq!(st.named("http_code.200"), 3);
}

#[test]
fn refused_events_are_reported_refused_not_worth_retrying() {
    let server = Server::plain();
    server.set_status(400);
    let mut sink =
        HttpSink::start(config(server.url("http", "/"), Box::new(transform::Noop))).unwrap();
    assert_eq!(failure(sink.write_batch(&batch(1, 2, "k")), 2), (0, 2));
    sink.close();
    assert_eq!(server.requests().len(), 2);
    assert_eq!(sink.stats().rejected.load(Relaxed), 2);
}

#[test]
fn redirects_are_not_followed_and_count_as_not_delivered() {
    let server = Server::plain();
    server.set_status(302);
    let mut sink =
        HttpSink::start(config(server.url("http", "/"), Box::new(transform::Noop))).unwrap();
    let err = sink.write_batch(&batch(1, 3, "k")).unwrap_err();
    assert_eq!(err.failure(3).retry, vec![0, 1, 2]);
    assert!(
        err.to_string().contains("redirects are not followed"),
        "{err}"
    );
    sink.close();
    // Three POSTs with their bodies, and nothing else (no GET to a Location).
    let reqs = server.requests();
    assert_eq!(reqs.len(), 3);
    assert!(reqs
        .iter()
        .all(|r| r.method == "POST" && !r.body.is_empty()));
}

#[test]
fn dead_service_reports_every_event_worth_retrying() {
    // A port nobody listens on: bind, note it, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut sink = HttpSink::start(config(
        format!("http://127.0.0.1:{port}/"),
        Box::new(transform::Noop),
    ))
    .unwrap();
    assert_eq!(failure(sink.write_batch(&batch(1, 3, "k")), 3), (3, 0));
    sink.close();
    let st = sink.stats();
    assert_eq!(st.failed.load(Relaxed), 3);
    assert_eq!(st.request_errors.load(Relaxed), 3);
}

fn drop_output(sink: HttpSink, queue: usize) -> Output {
    let mut oc = OutputConfig::new(Overflow::Drop, 1);
    oc.queue = queue;
    Output::start(Box::new(sink), oc).unwrap()
}

#[test]
fn slow_service_full_queue_drops_and_counts_with_bounded_memory() {
    let server = Server::plain();
    server.set_delay(Duration::from_millis(200));
    let mut cfg = config(server.url("http", "/"), Box::new(transform::Noop));
    cfg.workers = 2;
    cfg.pool.connections = 2;
    let mut out = drop_output(HttpSink::start(cfg).unwrap(), 2);
    for i in 0..50 {
        out.offer(&Arc::new(batch(i * 2, 2, "k")));
        let queued = out.stats().counters.queued_batches.load(Relaxed);
        assert!(queued <= 2, "the queue never holds more than its size");
    }
    out.begin_close(Deadline::Stalled(Duration::from_secs(10)));
    assert!(out.join(Instant::now() + Duration::from_secs(30)));
    let a = out.stats().accounting();
    let dropped = out.stats().counters.lost(LossReason::QueueFull);
    // At most 2 queued + 1 being sent were accepted while the service sat on its answers.
    assert!((94..100).contains(&dropped), "dropped {dropped}");
    assert_eq!(a.received, 100);
    assert_eq!(a.lost, dropped);
    assert_eq!(a.delivered + dropped, 100, "every accepted event delivered");
    assert_eq!(a.in_flight, 0);
    assert_eq!(server.requests().len() as u64, a.delivered);
}

#[test]
fn tls_with_client_certificate_and_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let (cert, key) = (dir.path().join("client.pem"), dir.path().join("client.key"));
    let first = pki.client("client-one", &cert, &key);
    let server = Server::tls(pki.server_config());

    let mut cfg = config(server.url("https", "/secure"), Box::new(transform::Noop));
    cfg.pool.tls = Some(TlsFiles {
        client_cert: cert.clone(),
        client_key: key.clone(),
        ca_cert: pki.ca_pem.clone(),
    });
    cfg.cert_refresh = Duration::from_millis(50);
    // Short idle age so the rotated certificate is not hidden behind a pooled connection.
    cfg.pool.idle_timeout = Duration::from_millis(100);
    let mut sink = HttpSink::start(cfg).unwrap();
    let b = batch(1, 2, "k");
    sink.write_batch(&b).unwrap();
    let reqs = server.wait_for(2);
    assert_eq!(reqs.len(), 2);
    for (r, line) in reqs.iter().zip(b.lines()) {
        assert_eq!(r.body, line);
        assert_eq!(r.client_cert.as_deref(), Some(&first[..]));
    }

    // Rotate the client certificate: the watcher picks it up and new connections use it.
    std::thread::sleep(Duration::from_millis(20));
    let second = pki.client("client-two", &cert, &key);
    assert_ne!(first, second);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut n = 2;
    loop {
        std::thread::sleep(Duration::from_millis(150));
        sink.write_batch(&batch(100 + n as i64, 1, "k")).unwrap();
        n += 1;
        let reqs = server.wait_for(n);
        if reqs.last().unwrap().client_cert.as_deref() == Some(&second[..]) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "rotation not picked up"
        );
    }
    sink.close();
    assert_eq!(sink.stats().delivered.load(Relaxed) as usize, n);
}

#[test]
fn tls_refuses_a_server_from_another_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ours = Pki::new(dir.path());
    let other_dir = tempfile::tempdir().unwrap();
    let theirs = Pki::new(other_dir.path());
    let (cert, key) = (dir.path().join("c.pem"), dir.path().join("c.key"));
    ours.client("c", &cert, &key);
    // The server presents a certificate from a CA we do not trust.
    let server = Server::tls(theirs.server_config());
    let mut cfg = config(server.url("https", "/"), Box::new(transform::Noop));
    cfg.pool.tls = Some(TlsFiles {
        client_cert: cert,
        client_key: key,
        ca_cert: ours.ca_pem.clone(),
    });
    let mut sink = HttpSink::start(cfg).unwrap();
    assert_eq!(failure(sink.write_batch(&batch(1, 1, "k")), 1), (1, 0));
    sink.close();
    assert!(server.requests().is_empty());
    assert_eq!(sink.stats().failed.load(Relaxed), 1);
}

#[test]
fn missing_certificate_files_are_a_setup_error_naming_the_path() {
    let mut cfg = config("https://127.0.0.1:1/".into(), Box::new(transform::Noop));
    cfg.pool.tls = Some(TlsFiles {
        client_cert: "/nonexistent/client.pem".into(),
        client_key: "/nonexistent/client.key".into(),
        ca_cert: "/nonexistent/ca.pem".into(),
    });
    let err = HttpSink::start(cfg).err().unwrap().to_string();
    assert!(err.contains("/nonexistent/client.pem"), "{err}");
}

#[test]
fn closing_gives_up_at_the_deadline_and_counts_the_rest() {
    let server = Server::plain();
    server.set_delay(Duration::from_millis(300));
    let mut out = drop_output(
        HttpSink::start(config(server.url("http", "/"), Box::new(transform::Noop))).unwrap(),
        8,
    );
    for i in 0..5 {
        out.offer(&Arc::new(batch(i, 1, "k")));
    }
    out.begin_close(Deadline::At(Instant::now() + Duration::from_millis(100)));
    assert!(out.join(Instant::now() + Duration::from_secs(5)));
    let st = out.stats();
    let a = st.accounting();
    // The request in flight when the deadline passed finishes; nothing after it is tried.
    assert!(a.delivered <= 1, "{a}");
    assert_eq!(st.counters.lost(LossReason::Shutdown), 5 - a.delivered);
    assert_eq!(a.in_flight, 0, "{a}");
    assert_eq!(server.requests().len() as u64, a.delivered);
}
