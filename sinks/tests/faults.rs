//! Fault tests with real peers and a real filesystem: an HTTP service down for 20 s and back,
//! a syslog receiver restarted, a full disk. In every case the daemon's policy holds: the sink
//! keeps working afterwards and every event is either delivered or counted, exactly.

mod support;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pauditd_sinks::file::{FileConfig, FileSink};
use pauditd_sinks::http::breaker::BreakerConfig;
use pauditd_sinks::http::client::PoolConfig;
use pauditd_sinks::http::transform;
use pauditd_sinks::http::{HttpConfig, HttpSink};
use pauditd_sinks::output::{Deadline, Output, OutputConfig, Overflow};
use pauditd_sinks::retry::Attempts;
use pauditd_sinks::syslog::{SyslogConfig, SyslogSink};
use pauditd_sinks::{Sink, SinkError};
use support::events::{batch, sequence_of};
use support::httpd::Server;
use support::tmpfs::Tmpfs;

/// Lost events reported by a write (0 when it succeeded).
fn lost_of(r: Result<(), SinkError>) -> u64 {
    match r {
        Ok(()) => 0,
        Err(e) => e.lost() as u64,
    }
}

#[test]
fn http_service_down_for_20s_then_back_every_event_arrives_or_is_counted() {
    let first = Server::plain();
    let addr = first.addr;
    let sink = HttpSink::start(HttpConfig {
        url: first.url("http", "/events"),
        workers: 2,
        buffer_size: 200,
        batch_size: None,
        trace_header: None,
        transform: Box::new(transform::Noop),
        debug: false,
        breaker: BreakerConfig::with_ratio(0.05),
        pool: PoolConfig {
            connections: 2,
            idle_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(5),
            tls: None,
        },
        cert_refresh: Duration::from_secs(60),
    })
    .unwrap();
    // pauditd's policy: never block the pipeline; attempts, then drop and count.
    let mut oc = OutputConfig::new(Overflow::Drop, 3);
    oc.pause = Duration::from_millis(500);
    oc.queue = 20;
    let mut out = Output::start(Box::new(sink), oc).unwrap();
    let mut next = 1i64;
    let mut max_queued = 0u64;
    // 100 events/s for `secs`.
    let mut run = |out: &Output, secs: u64| {
        let end = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < end {
            out.offer(&Arc::new(batch(next, 10)));
            next += 10;
            max_queued = max_queued.max(out.stats().counters.queued_batches.load(Relaxed));
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    run(&out, 3);
    first.stop();
    run(&out, 20);
    let second = Server::plain_at(addr);
    // Long enough for the breaker's cooldown and a probe to close it again.
    run(&out, 10);
    out.begin_close(Deadline::Stalled(Duration::from_secs(30)));
    assert!(out.join(Instant::now() + Duration::from_secs(60)));

    let total = (next - 1) as u64;
    let st = out.stats();
    let a = st.accounting();
    assert_eq!(a.received, total);
    assert_eq!(a.in_flight, 0, "{a}");
    assert_eq!(a.delivered + a.lost, total, "{a}");
    assert!(a.lost > 0, "the outage cost something");
    assert!(max_queued <= 20, "queue bounded: {max_queued}");
    let mut seen = BTreeSet::new();
    for r in first.requests().iter().chain(second.requests().iter()) {
        assert!(seen.insert(sequence_of(&r.body)), "duplicate delivery");
    }
    assert_eq!(
        seen.len() as u64,
        a.delivered,
        "every delivered event arrived once"
    );
    // The service was reachable again: the last second of events all arrived.
    assert!(
        (next - 100..next).all(|s| seen.contains(&s)),
        "events after recovery missing"
    );
}

fn syslog_cfg(address: String) -> SyslogConfig {
    SyslogConfig {
        network: "tcp".into(),
        address,
        priority: 132,
        tag: "pauditd".into(),
        hostname: "testhost".into(),
        timeout: Duration::from_secs(2),
    }
}

/// Accept one connection on `listener` and collect its lines until EOF or `stop`.
fn collect(listener: TcpListener) -> std::thread::JoinHandle<Vec<i64>> {
    std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        BufReader::new(conn)
            .lines()
            .map_while(Result::ok)
            .map(|l| {
                let json = &l[l.find('{').unwrap()..];
                sequence_of(json.as_bytes())
            })
            .collect()
    })
}

#[test]
fn syslog_receiver_restarted_reconnect_and_nothing_lost_beyond_what_is_counted() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut sink = SyslogSink::connect(syslog_cfg(addr.to_string())).unwrap();
    let (conn, _) = listener.accept().unwrap();
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut r = BufReader::new(conn);
        // Read 50 lines, then the receiver goes away (closes its end).
        for _ in 0..50 {
            let mut l = String::new();
            r.read_line(&mut l).unwrap();
            got.push(sequence_of(&l.as_bytes()[l.find('{').unwrap()..]));
        }
        got
    });
    let mut lost = lost_of(sink.write_batch(&batch(1, 50)));
    let before = reader.join().unwrap();
    drop(listener);
    std::thread::sleep(Duration::from_millis(50));
    // Down: nothing listens; the write fails fast and reports these ten.
    lost += lost_of(sink.write_batch(&batch(51, 10)));
    // Back on the same port.
    let listener = TcpListener::bind(addr).unwrap();
    let after = collect(listener);
    lost += lost_of(sink.write_batch(&batch(61, 40)));
    drop(sink); // closes the connection: the collector sees EOF
    let after = after.join().unwrap();
    assert_eq!(before, (1..=50).collect::<Vec<_>>());
    assert_eq!(lost, 10, "the events written while nothing listened");
    assert_eq!(
        after,
        (61..=100).collect::<Vec<_>>(),
        "reconnected, in order"
    );
    assert_eq!(before.len() as u64 + after.len() as u64 + lost, 100);
}

#[test]
fn full_disk_is_counted_logged_and_writing_resumes_when_space_returns() {
    let dir = std::env::temp_dir().join(format!("pauditd-diskfull-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Dropped last: the directory goes once the tmpfs is unmounted.
    struct RemoveDir<'a>(&'a Path);
    impl Drop for RemoveDir<'_> {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(self.0);
        }
    }
    let _rm = RemoveDir(&dir);
    let Some(_fs) = Tmpfs::mount(&dir, "64k", "the disk-full test") else {
        return;
    };
    let filler = dir.join("filler");
    let path = dir.join("events.jsonl");
    let mut sink = FileSink::open(FileConfig {
        path: path.clone(),
        mode: 0o600,
        user: None,
        group: None,
        follow_symlink: false,
        policy: Attempts {
            attempts: 2,
            pause: Duration::from_millis(10),
        },
    })
    .unwrap();
    // Fill the filesystem with something else.
    let _ = std::fs::write(&filler, vec![b'x'; 64 << 10]);
    let mut lost = 0;
    let mut next = 1;
    for _ in 0..20 {
        lost += lost_of(sink.write_batch(&batch(next, 10)));
        next += 10;
    }
    assert!(lost > 0, "the full disk refused writes");
    // Space returns; the same sink writes again.
    std::fs::remove_file(&filler).unwrap();
    let resumed = lost_of(sink.write_batch(&batch(next, 10)));
    assert_eq!(resumed, 0, "writes resume");
    drop(sink);
    let text = std::fs::read_to_string(&path).unwrap();
    let written: Vec<i64> = text.lines().map(|l| sequence_of(l.as_bytes())).collect();
    assert!(written.ends_with(&(next..next + 10).collect::<Vec<_>>()));
    // Every event is in the file or counted lost, and no line is torn.
    assert_eq!(written.len() as u64 + lost, (next + 10 - 1) as u64);
    let mut sorted = written.clone();
    sorted.dedup();
    assert_eq!(sorted.len(), written.len(), "no duplicates");
}
