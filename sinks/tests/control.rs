//! Control apart from data, and the failures that used to stall the writer: a `block` output
//! whose destination is dead (control and the shutdown deadline still get through, a reload
//! still takes effect), an encoder that panics (a counted batch, the next ones flow), and an
//! HTTP service that accepts and never answers (one deadline per batch, the breaker trips at
//! once). Real threads, real files, a real TCP peer.
//!
//! Failpoints are process-wide: every test here holds a `FailScenario` so they take turns.

mod support;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pauditd_engine::Event;
use pauditd_sinks::fanout::Fanout;
use pauditd_sinks::file::{FileConfig, FileSink};
use pauditd_sinks::http::breaker::BreakerConfig;
use pauditd_sinks::http::client::PoolConfig;
use pauditd_sinks::http::transform;
use pauditd_sinks::http::{HttpConfig, HttpSink};
use pauditd_sinks::output::{Deadline, LossReason, Output, OutputConfig, Overflow};
use pauditd_sinks::retry::Attempts;
use pauditd_sinks::writer::{self, CloseBudget, Control, WriterReport, STUCK_GRACE};
use pauditd_sinks::{Batch, Sink, SinkError};
use support::events::batch;

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pauditd-control-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn file_output(path: &Path, overflow: Overflow) -> Output {
    let sink = FileSink::open(FileConfig {
        path: path.to_path_buf(),
        mode: 0o600,
        user: None,
        group: None,
        policy: Attempts::new(1),
        follow_symlink: false,
    })
    .unwrap();
    Output::start(Box::new(sink), OutputConfig::new(overflow, 3)).unwrap()
}

/// A destination that is down: every write fails after a short while.
struct Dead;

impl Sink for Dead {
    fn name(&self) -> &'static str {
        "syslog"
    }

    fn write_batch(&mut self, batch: &Batch) -> Result<(), SinkError> {
        std::thread::sleep(Duration::from_millis(20));
        Err(SinkError::Write {
            sink: "syslog",
            attempts: 1,
            lost: batch.len(),
            error: std::io::ErrorKind::ConnectionRefused.into(),
        })
    }
}

fn blocked_on_dead() -> Output {
    let mut oc = OutputConfig::new(Overflow::Block, 3);
    oc.queue = 2;
    oc.backoff = (Duration::from_millis(50), Duration::from_millis(200));
    Output::start(Box::new(Dead), oc).unwrap()
}

/// `n` events with serials from `first`.
fn events(first: i64, n: i64) -> Vec<Event> {
    (first..first + n)
        .map(|s| {
            let mut e = Event::new(s, b"1700000000.5");
            e.push_message(1300, b"syscall=39 key=\"load\"");
            e
        })
        .collect()
}

fn serials_in(path: &Path) -> Vec<i64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["sequence"].as_i64().unwrap()
        })
        .collect()
}

fn wait_until(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < Duration::from_secs(secs), "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The daemon's situation with `overflow: block` and a dead receiver: the writer waits in
/// the block output's `offer`, the data queue fills, the engine waits on it. Control still
/// gets through: a reload switches outputs once the old set's deadline (set from outside the
/// writer) frees it, and SIGTERM's deadline ends it all within its bound.
#[test]
fn a_block_output_on_a_dead_destination_holds_back_neither_control_nor_shutdown() {
    let _fp = fail::FailScenario::setup();
    let dir = tempdir("block");
    let (old_path, new_path) = (dir.join("old.jsonl"), dir.join("new.jsonl"));
    // The old set's file output must not block: releasing the old set's blocking outputs
    // gives each of them the 500 ms deadline, and a batch offered after it is counted lost
    // (`shutdown`), as it should be. It receives only the few batches before the writer got
    // stuck, so it cannot overflow.
    let first = Fanout::new(vec![
        blocked_on_dead(),
        file_output(&old_path, Overflow::Drop),
    ]);
    let first_handle = first.handle();
    let (tx, ctl, inbox) = writer::channels(4);
    let report = Arc::new(Mutex::new(WriterReport::default()));
    let timeout = Duration::from_secs(2);
    let w = writer::spawn(first, inbox, report.clone(), CloseBudget { timeout }).unwrap();
    // The engine's side: 200 batches of 10, waiting whenever the queue is full.
    let sent = Arc::new(std::sync::atomic::AtomicI64::new(0));
    let producer = {
        let (sent, tx) = (sent.clone(), tx.clone());
        std::thread::spawn(move || {
            for b in 0..200 {
                if tx.send((events(b * 10, 10), Instant::now())).is_err() {
                    break;
                }
                sent.store((b + 1) * 10, Relaxed);
            }
        })
    };
    // The writer is stuck: the block output's queue (2) and the data queue (4) fill up.
    wait_until("the data queue to fill", 10, || tx_full(&sent));
    std::thread::sleep(Duration::from_millis(300));
    let stuck_at = sent.load(Relaxed);
    assert!(
        stuck_at < 2000,
        "the producer waits behind the block output"
    );

    // SIGHUP: new outputs, started before the old retire; the old set's deadline frees the
    // writer, which then switches.
    let t = Instant::now();
    // `block`: the new set takes the producer's burst after the switch; under `drop` a loaded
    // machine made it drop (counted, by policy: 2 runs in 12 failed the exactly-once check).
    let second = Fanout::new(vec![file_output(&new_path, Overflow::Block)]);
    let second_handle = second.handle();
    assert!(ctl.send(Control::Replace(second)));
    first_handle.release_blocking(Deadline::At(Instant::now() + Duration::from_millis(500)));
    wait_until("the new output to receive events", 20, || {
        !serials_in(&new_path).is_empty()
    });
    let switched = t.elapsed();
    wait_until("the producer to finish", 20, || producer.is_finished());
    assert_eq!(sent.load(Relaxed), 2000);

    // SIGTERM: deadline first, then the data queue ends.
    let t = Instant::now();
    let deadline = Instant::now() + timeout;
    second_handle.set_deadline(Deadline::At(deadline));
    assert!(ctl.send(Control::Stop(deadline)));
    // The engine's last events, then its end.
    tx.send((events(2000, 10), Instant::now())).unwrap();
    drop(tx);
    producer.join().unwrap();
    let stats = w.join().unwrap();
    let stopped = t.elapsed();
    eprintln!("reload switched after {switched:?}; shutdown took {stopped:?}");
    assert!(
        stopped < timeout + STUCK_GRACE + Duration::from_secs(1),
        "{stopped:?}"
    );
    // Every event reached the old file or the new one, exactly once, in order.
    let mut all = serials_in(&old_path);
    all.extend(serials_in(&new_path));
    let want: Vec<i64> = (0..2010).collect();
    assert!(
        all == want,
        "{} of 2010 events in the files, first missing: {:?}",
        all.len(),
        want.iter().find(|s| !all.contains(s))
    );
    for s in &stats {
        let a = s.accounting();
        assert_eq!(a.in_flight, 0, "{}: {a}", s.name);
    }
    let dead = stats.iter().find(|s| s.name == "syslog").unwrap();
    assert_eq!(
        dead.counters.lost(LossReason::Shutdown) + dead.counters.lost(LossReason::Closed),
        dead.accounting().received,
        "the dead output's events are counted"
    );
    assert!(report.lock().unwrap().dead_output.is_none());
}

fn tx_full(sent: &std::sync::atomic::AtomicI64) -> bool {
    // 2 in the block output's queue, 1 in its hands, 4 in the data queue, 1 in the writer's.
    let now = sent.load(Relaxed);
    std::thread::sleep(Duration::from_millis(100));
    now > 0 && sent.load(Relaxed) == now
}

#[cfg(feature = "failpoints")]
#[test]
fn an_encoder_panic_is_a_counted_batch_and_the_next_batches_flow() {
    let _fp = fail::FailScenario::setup();
    for workers in [0, 2] {
        let dir = tempdir(&format!("panic{workers}"));
        let path = dir.join("out.jsonl");
        let mut out = Fanout::new(vec![file_output(&path, Overflow::Block)])
            .with_encoders(workers)
            .unwrap();
        // The third batch's encoding panics, once.
        fail::cfg("encode-batch", "2*off->1*panic").unwrap();
        for b in 0..10 {
            let mut e = events(b * 10, 10);
            out.write(&mut e);
        }
        out.flush_encoders();
        fail::remove("encode-batch");
        let failures = out.encode_failures();
        let stats = out.stats();
        assert!(out
            .close(
                Deadline::At(Instant::now() + Duration::from_secs(5)),
                Instant::now() + Duration::from_secs(10)
            )
            .is_empty());
        // The failpoint's third evaluation panics. Inline that is the third batch; with
        // workers encoding concurrently it is whichever batch evaluates it third, so only
        // "one whole batch, the rest in order" is fixed.
        let got = serials_in(&path);
        let lost = (0..10)
            .find(|b| !got.contains(&(b * 10)))
            .expect("one batch is missing");
        if workers == 0 {
            assert_eq!(lost, 2, "inline, the third batch panics");
        }
        let want: Vec<i64> = (0..100).filter(|s| s / 10 != lost).collect();
        assert_eq!(got, want, "{workers} worker(s)");
        assert_eq!(failures.events(), 10, "{workers} worker(s)");
        assert_eq!(failures.batches.load(Relaxed), 1);
        assert_eq!(stats[0].accounting().delivered, 90);
    }
}

/// A listener that accepts connections and never answers (a hung service).
fn hung_service() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let n = accepted.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in l.incoming().flatten() {
            n.fetch_add(1, Relaxed);
            held.push(c);
        }
    });
    (format!("http://{addr}/events"), accepted)
}

#[test]
fn an_http_batch_has_one_deadline_and_a_timeout_trips_the_breaker_at_once() {
    let _fp = fail::FailScenario::setup();
    let (url, accepted) = hung_service();
    let workers = 4;
    let mut sink = HttpSink::start(HttpConfig {
        url,
        workers,
        buffer_size: 64,
        batch_size: None,
        trace_header: None,
        transform: Box::new(transform::Noop),
        debug: false,
        breaker: BreakerConfig::with_ratio(0.05),
        pool: PoolConfig {
            connections: workers,
            idle_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(1),
            tls: None,
        },
        cert_refresh: Duration::from_secs(60),
    })
    .unwrap();
    let stats = sink.stats();
    // 40 requests on 4 workers: 10 rounds of 1 s each with a per-request timeout.
    let b = batch(0, 40);
    let t = Instant::now();
    let e = sink.write_batch(&b).expect_err("nothing answers");
    let took = t.elapsed();
    eprintln!(
        "a batch of 40 requests to a hung service took {took:?}; {} connection(s)",
        accepted.load(Relaxed)
    );
    let f = e.failure(b.len());
    assert_eq!(f.retry, (0..40).collect::<Vec<_>>(), "every event to retry");
    // One deadline (1 s) plus the answer grace (1 s), never 10 rounds.
    assert!(took < Duration::from_secs(4), "{took:?}");
    assert_eq!(stats.breaker_opened.load(Relaxed), 1, "tripped at once");
    // Only the first round went out; the rest failed fast.
    assert!(
        accepted.load(Relaxed) <= workers,
        "{}",
        accepted.load(Relaxed)
    );
    sink.close();
}
