//! `pauditd replay` through the Kafka output to a real broker (tansu on loopback): 100,000
//! events in each format, read back and compared byte for byte, in order, with what the file
//! output of the same run wrote.

#[path = "../sinks/tests/support/kafka.rs"]
mod kafka_broker;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use kafka_broker::Broker;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// 782 renumbered copies of the laurel corpus: over 100,000 events.
fn input(dir: &Path) -> PathBuf {
    let p = dir.join("input.log");
    let out = Command::new("python3")
        .arg(root().join("scripts/make-bench-input"))
        .arg("782")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(&p, out.stdout).unwrap();
    p
}

#[test]
fn replay_of_100k_events_reaches_kafka_exactly_in_every_format() {
    let dir = std::env::temp_dir().join(format!("pauditd-kafka-replay-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let Some(broker) = Broker::start(&dir.join("broker")) else {
        return;
    };
    let log = input(&dir);
    for format in ["pauditd", "enriched", "ecs"] {
        broker.create_topic(format, 3);
        let file = dir.join(format!("{format}.jsonl"));
        let cfg = dir.join(format!("{format}.yaml"));
        std::fs::write(
            &cfg,
            format!(
                "output:\n  file: {{ enabled: true, path: {}, format: {format} }}\n  kafka:\n    enabled: true\n    brokers: ['{}']\n    topic: {format}\n    format: {format}\n    compression: lz4\n",
                file.display(),
                broker.address()
            ),
        )
        .unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_pauditd"))
            .args([
                "replay",
                "--passwd",
                "tests/data/passwd",
                "--group",
                "tests/data/group",
            ])
            .arg(&log)
            .arg("--config")
            .arg(&cfg)
            .current_dir(root())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{format}: {stderr}");
        let lines = std::fs::read_to_string(&file).unwrap();
        let lines: Vec<&str> = lines.lines().collect();
        assert!(lines.len() >= 100_000, "{format}: {} events", lines.len());
        let mut got = broker.read(format, lines.len(), Duration::from_secs(180));
        got.sort_by_key(|m| (m.partition, m.offset));
        assert_eq!(got.len(), lines.len(), "{format}: one message per event");
        for (i, (m, l)) in got.iter().zip(&lines).enumerate() {
            assert_eq!(
                std::str::from_utf8(&m.payload).unwrap(),
                *l,
                "{format}: message {i}"
            );
        }
        eprintln!("{format}: {} events byte for byte", lines.len());
    }
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
}
