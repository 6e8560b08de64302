//! Throughput of each stage over the shared corpus (repeated, serials renumbered):
//! parse, reassemble, encode, and the whole replay pipeline. `make bench` runs it; criterion
//! reports records/s (elements) and MB/s (bytes) per stage.

use std::io::BufReader;
use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pauditd_engine::replay::{self, ReplayOptions};
use pauditd_engine::{
    header, logline, CachePolicy, Event, FilterSet, Processor, ProcessorConfig, UserDb, UserSource,
};
use pauditd_sinks::Batch;

#[path = "../tests/support/corpus.rs"]
mod corpus;

fn input(copies: usize) -> Vec<u8> {
    let names = corpus::files();
    assert!(
        !names.is_empty(),
        "the benches read the shared corpus at {}",
        corpus::dir().display()
    );
    let mut lines: Vec<Vec<u8>> = Vec::new();
    for n in names {
        for l in std::fs::read(n).unwrap().split(|&b| b == b'\n') {
            if l.starts_with(b"type=") || l.starts_with(b"node=") {
                lines.push(l.to_vec());
            }
        }
    }
    let mut out = Vec::new();
    for c in 0..copies {
        for l in &lines {
            // Renumber serials so copies do not merge: audit(T:S) -> audit(T:S+c*1e8).
            let s = String::from_utf8_lossy(l);
            match (s.find("audit("), s.find("):")) {
                (Some(a), Some(b)) if a < b => {
                    let inner = &s[a + 6..b];
                    let (ts, serial) = inner.split_once(':').unwrap_or((inner, "0"));
                    let serial: u64 =
                        serial.parse().unwrap_or(0) % 100_000_000 + (c as u64 + 1) * 100_000_000;
                    out.extend_from_slice(
                        format!("{}audit({ts}:{serial}){}", &s[..a], &s[b + 1..]).as_bytes(),
                    );
                }
                _ => out.extend_from_slice(l),
            }
            out.push(b'\n');
        }
    }
    out
}

fn processor() -> Processor<UserDb> {
    let passwd = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/passwd");
    Processor::new(
        ProcessorConfig::replay_defaults(1000),
        FilterSet::default(),
        UserDb::new(
            UserSource::passwd_file(&passwd).unwrap(),
            CachePolicy::Fresh(std::time::Duration::from_secs(1)),
        ),
    )
}

/// Every event of `data`, replayed as the daemon would.
fn replayed(data: &[u8]) -> Vec<Event> {
    let mut events = Vec::new();
    let mut p = processor();
    replay::run(
        BufReader::new(data),
        &mut p,
        &ReplayOptions {
            batch: 256,
            ..Default::default()
        },
        |e| events.append(e),
    )
    .unwrap();
    events
}

fn stages(c: &mut Criterion) {
    let data = input(50);
    let records = data
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .count() as u64;
    let mut g = c.benchmark_group("stages");
    g.sample_size(20);

    g.throughput(Throughput::Elements(records));
    g.bench_function("parse (records)", |b| {
        b.iter(|| {
            let mut n = 0u64;
            for l in data.split(|&b| b == b'\n') {
                if let Ok(logline::LogLine::Record(r)) = logline::parse(l) {
                    if let Ok(h) = header::parse(r.payload) {
                        n = n.wrapping_add(h.serial as u64);
                    }
                }
            }
            n
        })
    });
    g.bench_function("reassemble (records)", |b| {
        b.iter(|| {
            let mut p = processor();
            let mut out: Vec<Event> = Vec::new();
            for (i, l) in data.split(|&b| b == b'\n').enumerate() {
                p.push_log_line(l, i as u64, &mut out);
                out.clear();
            }
            p.finish(&mut out);
        })
    });
    let events = replayed(&data);
    g.throughput(Throughput::Elements(records));
    g.bench_function("encode (records)", |b| {
        let mut batch = Batch::default();
        b.iter(|| {
            batch.clear();
            for e in &events {
                batch.push_event(e);
            }
            batch.bytes().len()
        })
    });
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("replay pipeline (bytes)", |b| {
        b.iter(|| {
            let mut p = processor();
            let mut batch = Batch::default();
            let mut written = 0;
            replay::run(
                BufReader::new(&data[..]),
                &mut p,
                &ReplayOptions {
                    batch: 256,
                    ..Default::default()
                },
                |evs| {
                    for e in evs.drain(..) {
                        batch.push_event(&e);
                    }
                    written += batch.bytes().len();
                    batch.clear();
                },
            )
            .unwrap();
            written
        })
    });
    g.finish();
}

/// pauditd's event shape as serde data, for the encoder comparison. Building it (lossy UTF-8,
/// a sorted map) is part of the cost of encoding with serde, so it is inside the timed loop.
#[derive(serde::Serialize)]
struct SerdeEvent<'a> {
    sequence: i64,
    timestamp: std::borrow::Cow<'a, str>,
    messages: Vec<SerdeMessage<'a>>,
    uid_map: std::collections::BTreeMap<std::borrow::Cow<'a, str>, std::borrow::Cow<'a, str>>,
    rule_key: std::borrow::Cow<'a, str>,
}

#[derive(serde::Serialize)]
struct SerdeMessage<'a> {
    #[serde(rename = "type")]
    rtype: u16,
    data: std::borrow::Cow<'a, str>,
}

/// Appends one event as a JSON line through a serde serializer.
type LineEncoder = dyn Fn(&mut Vec<u8>, &SerdeEvent<'_>);

fn serde_event(e: &Event) -> SerdeEvent<'_> {
    let s = String::from_utf8_lossy;
    SerdeEvent {
        sequence: e.serial,
        timestamp: s(e.timestamp()),
        messages: e
            .messages()
            .map(|(rtype, data)| SerdeMessage {
                rtype,
                data: s(data),
            })
            .collect(),
        uid_map: e.uid_map().into_iter().map(|(k, v)| (s(k), s(v))).collect(),
        rule_key: s(e.rule_key()),
    }
}

/// Our Go-exact encoder against serde_json and simd-json on the same events. Neither library
/// prints pauditd's bytes (no HTML escapes, different invalid-UTF-8 handling); this measures
/// whether either would be faster.
fn encoders(c: &mut Criterion) {
    let data = input(20);
    let events = replayed(&data);
    let mut g = c.benchmark_group("encoders");
    g.throughput(Throughput::Elements(events.len() as u64));
    let mut out = Vec::with_capacity(8 << 20);
    g.bench_function("pauditd go-exact (events)", |b| {
        b.iter(|| {
            out.clear();
            for e in &events {
                pauditd_sinks::pauditd_json::encode_event(e, &mut out);
            }
            out.len()
        })
    });
    let serde_json_line = |out: &mut Vec<u8>, e: &SerdeEvent<'_>| {
        serde_json::to_writer(&mut *out, e).unwrap();
        out.push(b'\n');
    };
    let simd_json_line = |out: &mut Vec<u8>, e: &SerdeEvent<'_>| {
        simd_json::to_writer(&mut *out, e).unwrap();
        out.push(b'\n');
    };
    let libraries: [(&str, &LineEncoder); 2] = [
        ("serde_json (events)", &serde_json_line),
        ("simd-json (events)", &simd_json_line),
    ];
    for (name, encode) in libraries {
        g.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                for e in &events {
                    encode(&mut out, &serde_event(e));
                }
                out.len()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, stages, encoders);
criterion_main!(benches);
