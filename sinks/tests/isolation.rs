//! Outputs on their own, against real peers: a spooled HTTP output through a 60 s outage
//! under load, a full spool, a spool directory that cannot be used, and a corrupt spool left
//! by an earlier run. Every event is delivered, spooled or counted, and the other outputs
//! never notice.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pauditd_sinks::fanout::Fanout;
use pauditd_sinks::file::{FileConfig, FileSink};
use pauditd_sinks::http::breaker::BreakerConfig;
use pauditd_sinks::http::client::PoolConfig;
use pauditd_sinks::http::transform;
use pauditd_sinks::http::{HttpConfig, HttpSink};
use pauditd_sinks::output::{Deadline, LossReason, Output, OutputConfig, Overflow};
use pauditd_sinks::retry::Attempts;
use pauditd_sinks::spool::{Spool, SpoolConfig};
use support::events::{batch, sequence_of};
use support::httpd::Server;
use support::tmpfs::Tmpfs;

fn http_sink(url: String) -> HttpSink {
    HttpSink::start(HttpConfig {
        url,
        workers: 1,
        buffer_size: 10,
        batch_size: None,
        trace_header: None,
        transform: Box::new(transform::Noop),
        debug: false,
        breaker: BreakerConfig::with_ratio(0.05),
        pool: PoolConfig {
            connections: 1,
            idle_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(5),
            tls: None,
        },
        cert_refresh: Duration::from_secs(60),
    })
    .unwrap()
}

/// A spool in `dir` (no fsync, no owner, no write-ahead).
fn spool_at(dir: &Path, max_bytes: u64) -> SpoolConfig {
    SpoolConfig {
        dir: dir.to_path_buf(),
        max_bytes,
        fsync: false,
        owner: None,
        write_ahead: false,
        dirs: Default::default(),
    }
}

fn spooled(dir: &Path, max_bytes: u64, queue: usize) -> OutputConfig {
    let mut oc = OutputConfig::new(Overflow::Spool, 3);
    oc.queue = queue;
    oc.spool = Some(spool_at(dir, max_bytes));
    oc
}

fn file_output(path: &Path) -> Output {
    let sink = FileSink::open(FileConfig {
        path: path.to_path_buf(),
        mode: 0o600,
        user: None,
        group: None,
        follow_symlink: false,
        policy: Attempts::new(1),
    })
    .unwrap();
    Output::start(Box::new(sink), OutputConfig::new(Overflow::Drop, 3)).unwrap()
}

fn wait_until(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < Duration::from_secs(secs), "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn http_down_60s_under_load_spools_and_delivers_every_event_once_in_order() {
    let t = tempfile::tempdir().unwrap();
    let first = Server::plain();
    let addr = first.addr;
    let file = t.path().join("events.jsonl");
    let mut out = Fanout::new(vec![
        Output::start(
            Box::new(http_sink(first.url("http", "/events"))),
            spooled(&t.path().join("spool"), 1 << 30, 4),
        )
        .unwrap(),
        file_output(&file),
    ]);
    let mut next = 1i64;
    // 200 events/s for `secs`, in batches of 20.
    let mut run = |out: &mut Fanout, secs: u64| {
        let end = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < end {
            out.offer(Arc::new(batch(next, 20)));
            next += 20;
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    run(&mut out, 3);
    first.stop();
    run(&mut out, 60);
    let http = out.stats()[0].clone();
    assert!(
        http.counters.spool_events.load(Relaxed) > 10_000,
        "the outage went to the spool"
    );
    let second = Server::plain_at(addr);
    run(&mut out, 5);
    wait_until("the spool to drain", 120, || {
        let c = &http.counters;
        c.spool_events.load(Relaxed) == 0 && http.accounting().in_flight == 0
    });
    let stuck = out.close(
        Deadline::At(Instant::now() + Duration::from_secs(10)),
        Instant::now() + Duration::from_secs(20),
    );
    assert!(stuck.is_empty());
    let total = (next - 1) as u64;
    let a = http.accounting();
    assert_eq!(a.received, total, "{a}");
    assert_eq!(a.delivered, total, "nothing dropped: {a}");
    assert_eq!((a.lost, a.spooled, a.in_flight), (0, 0, 0), "{a}");
    assert!(http.counters.unspooled.load(Relaxed) > 10_000);
    // Exactly once, in order, across both lives of the service.
    let got: Vec<i64> = first
        .requests()
        .iter()
        .chain(second.requests().iter())
        .map(|r| sequence_of(&r.body))
        .collect();
    assert_eq!(got, (1..next).collect::<Vec<_>>());
    // The file output never waited for the dead service.
    let f = out.stats()[1].accounting();
    assert_eq!((f.delivered, f.lost), (total, 0), "{f}");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap().lines().count() as u64,
        total
    );
}

#[test]
fn spool_on_a_full_disk_counts_what_it_cannot_keep_and_the_other_output_goes_on() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("small");
    std::fs::create_dir(&dir).unwrap();
    let Some(_fs) = Tmpfs::mount(&dir, "256k", "the spool disk-full test") else {
        return;
    };
    // A service that is down from the start, a spool whose disk holds ~256 KiB.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let file = t.path().join("events.jsonl");
    let mut out = Fanout::new(vec![
        Output::start(
            Box::new(http_sink(format!("http://127.0.0.1:{port}/"))),
            spooled(&dir.join("spool"), 1 << 30, 2),
        )
        .unwrap(),
        file_output(&file),
    ]);
    let http = out.stats()[0].clone();
    for i in 0..200 {
        // The spool's buffer thread takes a burst only as deep as its queue (2): offer once
        // it has room, as a steady stream would.
        wait_until("room in the http output's queue", 10, || {
            http.counters.queued_batches.load(Relaxed) < 2
        });
        out.offer(Arc::new(batch(i * 50 + 1, 50)));
    }
    wait_until("the spool to fill", 30, || {
        http.counters.lost(LossReason::SpoolError) > 0
    });
    out.close(
        Deadline::At(Instant::now() + Duration::from_secs(2)),
        Instant::now() + Duration::from_secs(10),
    );
    let a = http.accounting();
    assert_eq!(a.received, 10_000, "{a}");
    assert_eq!(a.in_flight, 0, "{a}");
    assert_eq!(a.delivered + a.lost + a.spooled, 10_000, "{a}");
    assert!(a.spooled > 0 && a.lost > 0, "{a}");
    let f = out.stats()[1].accounting();
    assert_eq!(
        (f.delivered, f.lost),
        (10_000, 0),
        "the file output went on: {f}"
    );
    // What the spool kept is whole and readable.
    let (_s, rec) = Spool::open(spool_at(&dir.join("spool"), 1 << 30)).unwrap();
    assert_eq!(rec.events, a.spooled);
    assert_eq!(rec.corrupt_bytes, 0);
}

#[test]
fn a_spool_directory_that_cannot_be_created_is_logged_and_overflow_is_counted() {
    let t = tempfile::tempdir().unwrap();
    // A regular file where a parent directory should be.
    let blocker = t.path().join("not-a-dir");
    std::fs::write(&blocker, b"x").unwrap();
    let server = Server::plain();
    server.set_delay(Duration::from_millis(200));
    let out = Output::start(
        Box::new(http_sink(server.url("http", "/"))),
        spooled(&blocker.join("spool"), 1 << 30, 1),
    )
    .unwrap();
    assert!(!out.has_spool());
    for i in 0..10 {
        out.offer(&Arc::new(batch(i * 5 + 1, 5)));
    }
    let mut out = out;
    out.begin_close(Deadline::Stalled(Duration::from_secs(10)));
    assert!(out.join(Instant::now() + Duration::from_secs(60)));
    let st = out.stats();
    let a = st.accounting();
    assert!(st.counters.lost(LossReason::SpoolError) > 0, "{a}");
    assert_eq!(a.delivered + a.lost, 50, "{a}");
    assert_eq!(a.in_flight, 0, "{a}");
    assert_eq!(server.requests().len() as u64, a.delivered);
}

#[test]
fn a_corrupt_spool_from_an_earlier_run_is_cut_counted_and_the_rest_delivered_first() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("spool");
    {
        let (mut s, _) = Spool::open(spool_at(&dir, 1 << 30)).unwrap();
        s.append(&batch(1, 3), 0).unwrap();
        s.append(&batch(4, 3), 0).unwrap();
    }
    // A crash mid-append: half a record at the end of the segment.
    let seg = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "seg"))
        .unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes.extend_from_slice(&[0x50, 0x53, 0x50, 0x31, 200, 0, 0, 0, 1]);
    std::fs::write(&seg, &bytes).unwrap();

    let file = t.path().join("events.jsonl");
    let sink = FileSink::open(FileConfig {
        path: file.clone(),
        mode: 0o600,
        user: None,
        group: None,
        follow_symlink: false,
        policy: Attempts::new(1),
    })
    .unwrap();
    let out = Output::start(Box::new(sink), spooled(&dir, 1 << 30, 4)).unwrap();
    let st = out.stats();
    assert_eq!(st.counters.recovered.load(Relaxed), 6);
    assert_eq!(st.counters.spool_corrupt_bytes.load(Relaxed), 9);
    out.offer(&Arc::new(batch(7, 2)));
    wait_until("recovered and new events written", 20, || {
        std::fs::read_to_string(&file).is_ok_and(|t| t.lines().count() == 8)
    });
    let mut out = out;
    out.begin_close(Deadline::At(Instant::now() + Duration::from_secs(5)));
    assert!(out.join(Instant::now() + Duration::from_secs(10)));
    let seqs: Vec<i64> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| sequence_of(l.as_bytes()))
        .collect();
    assert_eq!(
        seqs,
        (1..=8).collect::<Vec<_>>(),
        "recovered first, in order"
    );
    let a = st.accounting();
    assert_eq!(
        (a.received, a.delivered, a.lost, a.in_flight),
        (8, 8, 0, 0),
        "{a}"
    );
    let set: BTreeSet<i64> = seqs.into_iter().collect();
    assert_eq!(set.len(), 8, "no duplicates");
}

/// Closed at once (a reload hands the spool over, SIGTERM with the destination down) while
/// batches are still arriving: every event is in the spool or delivered, none in between,
/// and the next open finds exactly the spooled ones, in order.
#[test]
fn closing_at_once_under_load_leaves_every_event_accounted_and_on_disk() {
    let t = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    for round in 0..20 {
        let dir = t.path().join(format!("spool{round}"));
        let mut out = Output::start(
            Box::new(http_sink(format!("http://127.0.0.1:{port}/"))),
            spooled(&dir, 1 << 30, 4),
        )
        .unwrap();
        for i in 0..40 {
            out.offer(&Arc::new(batch(i * 10 + 1, 10)));
            if i == 20 + round {
                // Mid-stream: the next offers race the close.
                out.set_deadline(Deadline::At(Instant::now()));
            }
        }
        out.begin_close(Deadline::At(Instant::now()));
        assert!(out.join(Instant::now() + Duration::from_secs(20)));
        let a = out.stats().accounting();
        assert_eq!(a.in_flight, 0, "round {round}: {a}");
        assert_eq!(a.received, 400, "round {round}: {a}");
        drop(out);
        let (mut s, rec) = Spool::open(spool_at(&dir, 1 << 30)).unwrap();
        assert_eq!(rec.events, a.spooled, "round {round}: {a}");
        let mut got = Vec::new();
        while let Some(r) = s.peek().unwrap() {
            got.extend(r.batch.lines().map(sequence_of));
            s.ack(&r).unwrap();
        }
        let mut sorted = got.clone();
        sorted.sort_unstable();
        assert_eq!(got, sorted, "round {round}: spooled in order");
    }
}
