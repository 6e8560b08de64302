//! The Kafka output live: kernel events through the daemon's Kafka output to a real broker
//! (tansu on loopback), read back and compared with what the file output wrote.

use std::process::Command;

use crate::harness::*;
use crate::kafka_broker::Broker;

#[test]
fn live_events_reach_kafka_byte_for_byte_as_the_file_output_writes_them() {
    let Some(_k) = kernel() else { return };
    let dir = tempdir("kafka-live");
    let Some(broker) = Broker::start(&dir.join("broker")) else {
        return;
    };
    broker.create_topic("audit", 3);
    let prom = format!("127.0.0.1:{}", free_port());
    let cfg = format!(
        "  kafka:\n    enabled: true\n    brokers: ['{}']\n    topic: audit\n    spool: {{ dir: {} }}\nshutdown_timeout: 20s\nmetrics: {{ prometheus: {{ enabled: true, address: '{prom}' }} }}\n{}",
        broker.address(),
        dir.join("spool").display(),
        load_rules(8192)
    );
    let mut d = Daemon::start(&dir, "kafka", &cfg);
    d.wait_ready();
    let out = Command::new(loadgen())
        .args(["--rate", "20000", "--seconds", "5"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    let calls: usize = report.split_whitespace().next().unwrap().parse().unwrap();
    let load = |lines: &[String]| {
        lines
            .iter()
            .filter(|l| l.contains("\"rule_key\":\"load\""))
            .count()
    };
    wait_for("every load event in the file", 120, || {
        load(&d.lines()) >= calls
    });
    let (status, log) = d.terminate();
    assert!(status.success(), "{log}");
    assert_released(&log);
    let file = std::fs::read_to_string(dir.join("kafka.jsonl")).unwrap();
    let file: Vec<&str> = file.lines().collect();
    let mut got = broker.read("audit", file.len(), std::time::Duration::from_secs(120));
    got.sort_by_key(|m| (m.partition, m.offset));
    eprintln!(
        "kafka live: {calls} load calls, {} events in the file, {} messages",
        file.len(),
        got.len()
    );
    assert_eq!(got.len(), file.len(), "one message per event, exactly");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    for (i, (m, line)) in got.iter().zip(&file).enumerate() {
        assert_eq!(
            std::str::from_utf8(&m.payload).unwrap(),
            *line,
            "message {i} differs from the file's line"
        );
        assert_eq!(m.key.as_deref(), Some(host.trim().as_bytes()));
    }
    assert!(load(&file.iter().map(|s| s.to_string()).collect::<Vec<_>>()) >= calls);
    assert!(
        log.contains("output kafka: written="),
        "the Kafka output's accounting is logged: {log}"
    );
}
