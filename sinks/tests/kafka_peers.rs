//! The Kafka output against a real Kafka-protocol broker on loopback (tansu, SQLite storage):
//! exact bytes and order per key, compression codecs, a broker killed and restarted, a broker
//! down at start, a missing topic, a wrong address beside a healthy output. Every test has
//! its own broker on its own port.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pauditd_sinks::fanout::Fanout;
use pauditd_sinks::file::{FileConfig, FileSink};
use pauditd_sinks::kafka::{check_properties, KafkaConfig, KafkaSink};
use pauditd_sinks::output::{Deadline, LossReason, Output, OutputConfig, Overflow};
use pauditd_sinks::retry::Attempts;
use pauditd_sinks::spool::SpoolConfig;
use pauditd_sinks::{Batch, Sink};
use support::events::{batch, sequence_of};
use support::kafka::{Broker, Record};

fn kafka_cfg(brokers: String, topic: &str) -> KafkaConfig {
    KafkaConfig {
        brokers: vec![brokers],
        topic: topic.into(),
        key: Some("testhost".into()),
        acks: "all".into(),
        compression: "zstd".into(),
        properties: Vec::new(),
        probe_timeout: Duration::from_secs(3),
    }
}

fn spooled(dir: &Path) -> OutputConfig {
    let mut oc = OutputConfig::new(Overflow::Spool, 3);
    oc.queue = 64;
    oc.spool = Some(SpoolConfig {
        dir: dir.to_path_buf(),
        max_bytes: 1 << 30,
        fsync: false,
        owner: None,
        write_ahead: false,
        dirs: Default::default(),
    });
    oc
}

fn wait_until(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    let mut said = Instant::now();
    while !cond() {
        assert!(start.elapsed() < Duration::from_secs(secs), "{what}");
        if said.elapsed() > Duration::from_secs(10) {
            eprintln!("still waiting for {what} after {:?}", start.elapsed());
            said = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The lines of `batches` without their newlines: what each message's payload must be.
fn payloads(batches: &[Arc<Batch>]) -> Vec<Vec<u8>> {
    batches
        .iter()
        .flat_map(|b| b.lines().map(|l| l.strip_suffix(b"\n").unwrap().to_vec()))
        .collect()
}

/// Messages in the order one key's messages keep: by partition, then offset.
fn by_partition(mut r: Vec<Record>) -> Vec<Record> {
    r.sort_by_key(|m| (m.partition, m.offset));
    r
}

fn close(out: &mut Output) {
    out.begin_close(Deadline::At(Instant::now() + Duration::from_secs(10)));
    assert!(out.join(Instant::now() + Duration::from_secs(20)));
}

#[test]
fn hundred_thousand_events_arrive_exactly_once_byte_for_byte_in_order() {
    let t = tempfile::tempdir().unwrap();
    let Some(broker) = Broker::start(&t.path().join("broker")) else {
        return;
    };
    broker.create_topic("audit", 3);
    let sink = KafkaSink::start(kafka_cfg(broker.address(), "audit")).unwrap();
    let stats = sink.stats();
    // All at once: the offering side waits for room (as replay does) rather than overflow.
    let mut oc = OutputConfig::new(Overflow::Block, 3);
    oc.queue = 64;
    let mut out = Output::start(Box::new(sink), oc).unwrap();
    let batches: Vec<Arc<Batch>> = (0..400)
        .map(|i| Arc::new(batch(i * 250 + 1, 250)))
        .collect();
    for b in &batches {
        out.offer(b);
    }
    let st = out.stats();
    wait_until("100,000 events acknowledged", 300, || {
        st.accounting().delivered == 100_000
    });
    close(&mut out);
    let a = st.accounting();
    assert_eq!(
        (a.received, a.delivered, a.lost),
        (100_000, 100_000, 0),
        "{a}"
    );
    assert_eq!(stats.acknowledged.load(Relaxed), 100_000);
    let got = by_partition(broker.read("audit", 100_000, Duration::from_secs(120)));
    assert_eq!(got.len(), 100_000, "exactly once");
    // One key: one partition, in the order offered, each payload the encoded line exactly.
    assert!(got.iter().all(|m| m.partition == got[0].partition));
    assert!(got
        .iter()
        .all(|m| m.key.as_deref() == Some(&b"testhost"[..])));
    let want = payloads(&batches);
    for (i, (m, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(&m.payload, w, "message {i}");
    }
}

#[test]
fn gzip_lz4_and_zstd_round_trip() {
    let t = tempfile::tempdir().unwrap();
    let Some(broker) = Broker::start(&t.path().join("broker")) else {
        return;
    };
    for codec in ["none", "gzip", "lz4", "zstd"] {
        broker.create_topic(codec, 1);
        let mut cfg = kafka_cfg(broker.address(), codec);
        cfg.compression = codec.into();
        let mut sink = KafkaSink::start(cfg).unwrap();
        let batches: Vec<Arc<Batch>> = (0..8).map(|i| Arc::new(batch(i * 250 + 1, 250))).collect();
        for b in &batches {
            sink.write_batch(b).unwrap();
        }
        sink.close();
        let got = by_partition(broker.read(codec, 2_000, Duration::from_secs(60)));
        let got: Vec<Vec<u8>> = got.into_iter().map(|m| m.payload).collect();
        assert_eq!(got, payloads(&batches), "{codec}");
    }
}

#[test]
fn a_missing_topic_is_refused_at_start_with_its_name() {
    let t = tempfile::tempdir().unwrap();
    let Some(broker) = Broker::start(&t.path().join("broker")) else {
        return;
    };
    broker.create_topic("present", 1);
    let e = KafkaSink::start(kafka_cfg(broker.address(), "absent"))
        .err()
        .expect("a missing topic must refuse the start")
        .to_string();
    assert!(
        e.contains("topic \"absent\" does not exist") && e.contains(&broker.address()),
        "{e}"
    );
    // Asking did not create it.
    let e = KafkaSink::start(kafka_cfg(broker.address(), "absent")).err();
    assert!(e.is_some(), "the topic was created by the probe");
}

#[test]
fn broker_killed_mid_run_and_restarted_5s_later_loses_nothing() {
    let t = tempfile::tempdir().unwrap();
    let Some(mut broker) = Broker::start(&t.path().join("broker")) else {
        return;
    };
    broker.create_topic("audit", 1);
    let mut cfg = kafka_cfg(broker.address(), "audit");
    // Fail fast while the broker is away, so the output's breaker and spool take over.
    cfg.properties = vec![("message.timeout.ms".into(), "2000".into())];
    let sink = KafkaSink::start(cfg).unwrap();
    let kstats = sink.stats();
    let mut out = Output::start(Box::new(sink), spooled(&t.path().join("spool"))).unwrap();
    let st = out.stats();
    let mut next = 1i64;
    // 2,000 events/s in batches of 100.
    let mut run = |out: &mut Output, secs: u64| {
        let end = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < end {
            out.offer(&Arc::new(batch(next, 100)));
            next += 100;
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    run(&mut out, 3);
    broker.kill();
    run(&mut out, 5);
    broker.restart();
    run(&mut out, 3);
    let total = (next - 1) as u64;
    wait_until("every event delivered after the restart", 180, || {
        st.accounting().delivered == total
    });
    close(&mut out);
    let a = st.accounting();
    assert_eq!((a.received, a.delivered, a.lost), (total, total, 0), "{a}");
    assert!(
        st.counters.spooled.load(Relaxed) > 0,
        "the outage went through the spool"
    );
    assert!(
        kstats.errors("MessageTimedOut") > 0,
        "the outage is counted by the client's error name"
    );
    let got = by_partition(broker.read("audit", total as usize, Duration::from_secs(120)));
    let seqs: Vec<i64> = got.iter().map(|m| sequence_of(&m.payload)).collect();
    let distinct: BTreeSet<i64> = seqs.iter().copied().collect();
    assert_eq!(
        distinct,
        (1..=total as i64).collect::<BTreeSet<_>>(),
        "every event arrived"
    );
    // First arrivals keep the order offered; copies (a batch sent again after a lost
    // acknowledgement) are counted, not hidden.
    let mut seen = BTreeSet::new();
    let firsts: Vec<i64> = seqs.iter().copied().filter(|s| seen.insert(*s)).collect();
    assert!(firsts.windows(2).all(|w| w[0] < w[1]), "order kept");
    eprintln!(
        "broker kill/restart: {total} events, {} messages, {} duplicate(s)",
        seqs.len(),
        seqs.len() - distinct.len()
    );
}

#[test]
fn broker_down_at_start_spools_then_delivers_once_it_is_up() {
    let t = tempfile::tempdir().unwrap();
    let Some(mut broker) = Broker::start(&t.path().join("broker")) else {
        return;
    };
    broker.create_topic("audit", 1);
    broker.kill();
    let mut cfg = kafka_cfg(broker.address(), "audit");
    cfg.probe_timeout = Duration::from_secs(1);
    cfg.properties = vec![("message.timeout.ms".into(), "2000".into())];
    let sink = KafkaSink::start(cfg).expect("brokers that do not answer do not stop the start");
    let mut out = Output::start(Box::new(sink), spooled(&t.path().join("spool"))).unwrap();
    let st = out.stats();
    let batches: Vec<Arc<Batch>> = (0..50).map(|i| Arc::new(batch(i * 100 + 1, 100))).collect();
    for b in &batches {
        out.offer(b);
    }
    wait_until("the events to reach the spool", 60, || {
        st.counters.spool_events.load(Relaxed) > 0
    });
    assert_eq!(st.accounting().delivered, 0);
    broker.restart();
    wait_until("every event delivered", 180, || {
        st.accounting().delivered == 5_000
    });
    close(&mut out);
    let got = by_partition(broker.read("audit", 5_000, Duration::from_secs(60)));
    let got: Vec<Vec<u8>> = got.into_iter().map(|m| m.payload).collect();
    assert_eq!(got, payloads(&batches));
}

#[test]
fn a_wrong_broker_address_is_counted_and_the_other_output_gets_everything() {
    let t = tempfile::tempdir().unwrap();
    // No broker needed: nothing listens there.
    let dead = format!("127.0.0.1:{}", support::kafka::free_port());
    let mut cfg = kafka_cfg(dead, "audit");
    cfg.probe_timeout = Duration::from_secs(1);
    cfg.properties = vec![("message.timeout.ms".into(), "1000".into())];
    let sink = KafkaSink::start(cfg).unwrap();
    let kstats = sink.stats();
    let path = t.path().join("events.jsonl");
    let file = FileSink::open(FileConfig {
        path: path.clone(),
        mode: 0o600,
        user: None,
        group: None,
        follow_symlink: false,
        policy: Attempts::new(1),
    })
    .unwrap();
    let mut out = Fanout::new(vec![
        Output::start(Box::new(sink), OutputConfig::new(Overflow::Drop, 1)).unwrap(),
        Output::start(Box::new(file), OutputConfig::new(Overflow::Drop, 1)).unwrap(),
    ]);
    for i in 0..10 {
        out.offer(Arc::new(batch(i * 100 + 1, 100)));
    }
    let (k, f) = (out.stats()[0].clone(), out.stats()[1].clone());
    wait_until("the file output to write everything", 30, || {
        f.accounting().delivered == 1_000
    });
    wait_until("the Kafka output to count everything lost", 120, || {
        k.counters.lost(LossReason::Failed) == 1_000
    });
    let stuck = out.close(
        Deadline::At(Instant::now() + Duration::from_secs(5)),
        Instant::now() + Duration::from_secs(15),
    );
    assert!(stuck.is_empty(), "{stuck:?}");
    assert_eq!(k.accounting().delivered, 0);
    assert_eq!(kstats.acknowledged.load(Relaxed), 0);
    assert!(kstats.failed.load(Relaxed) > 0);
    assert!(
        kstats.errors("MessageTimedOut") > 0,
        "the failure is counted by name"
    );
    assert_eq!(
        std::fs::read_to_string(&path).unwrap().lines().count(),
        1_000
    );
}

#[test]
fn a_message_the_broker_can_never_take_is_rejected_once_and_the_rest_of_its_batch_goes_on() {
    let t = tempfile::tempdir().unwrap();
    let Some(broker) = Broker::start(&t.path().join("broker")) else {
        return;
    };
    broker.create_topic("audit", 1);
    let mut cfg = kafka_cfg(broker.address(), "audit");
    // The client refuses messages over 2,000 bytes (MessageSizeTooLarge).
    cfg.properties = vec![("message.max.bytes".into(), "2000".into())];
    let mut sink = KafkaSink::start(cfg).unwrap();
    let stats = sink.stats();
    let mut b = batch(1, 1);
    let mut big = pauditd_engine::Event::new(2, b"1700000000.5");
    big.push_message(1300, "x".repeat(5_000).as_bytes());
    b.push_event(&big);
    for l in batch(3, 1).lines() {
        b.push_line(l);
    }
    let e = sink
        .write_batch(&b)
        .expect_err("the big message is refused");
    let f = e.failure(b.len());
    assert_eq!((f.retry, f.rejected), (vec![], 1), "{e}");
    assert!(stats.errors("MessageSizeTooLarge") >= 1);
    // The output counts a rejected event lost (`rejected`) and never sends it again.
    let mut out = Output::start(Box::new(sink), OutputConfig::new(Overflow::Drop, 3)).unwrap();
    out.offer(&Arc::new(b.clone()));
    let st = out.stats();
    wait_until("the batch to be settled", 30, || {
        st.accounting().delivered + st.counters.lost(LossReason::Rejected) == 3
    });
    close(&mut out);
    assert_eq!(st.counters.lost(LossReason::Rejected), 1);
    // Both small messages arrived twice (once per write), the big one never.
    let got = by_partition(broker.read("audit", 4, Duration::from_secs(30)));
    let seqs: Vec<i64> = got.iter().map(|m| sequence_of(&m.payload)).collect();
    assert_eq!(seqs, [1, 3, 1, 3]);
}

#[test]
fn unknown_and_bad_properties_are_each_reported_without_their_value() {
    let errs = check_properties(&[
        ("linger.ms".into(), "5".into()),
        ("no.such.property".into(), "hunter2".into()),
        ("batch.num.messages".into(), "s3cr3t-not-a-number".into()),
        ("sasl.password".into(), "fine".into()),
    ]);
    let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["no.such.property", "batch.num.messages"], "{errs:?}");
    for e in &errs {
        assert!(
            !e.message.contains("hunter2") && !e.message.contains("s3cr3t"),
            "a value leaked: {e:?}"
        );
        assert!(!e.message.is_empty());
    }
}
