use std::sync::Arc;

use pauditd_engine::container::Attribution;
use pauditd_engine::lineage::ProcessInfo;

use super::*;

fn encode(e: &Event) -> serde_json::Value {
    let mut out = Vec::new();
    encode_event(e, &mut out);
    assert_eq!(out.iter().filter(|b| **b == b'\n').count(), 1);
    serde_json::from_slice(&out).unwrap()
}

#[test]
fn lineage_and_attribution_are_written_when_known() {
    let mut e = Event::new(7, b"1700000000.250");
    e.push_message(
        1300,
        b"arch=c000003e syscall=59 success=yes exit=0 a0=1 a1=2 a2=3 a3=4 items=0 ppid=10 pid=11 auid=1000 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=pts0 ses=2 comm=\"ls\" exe=\"/usr/bin/ls\" key=\"x\"",
    );
    e.finish();
    let plain = encode(&e);
    assert_eq!(plain["process"]["parent"], serde_json::json!({"pid": 10}));
    assert!(plain.get("container").is_none());
    e.set_parent(Some(Arc::new(ProcessInfo {
        pid: 10,
        ppid: Some(1),
        comm: Some("bash".into()),
        exe: Some("/usr/bin/bash".into()),
        start_time: 99,
        exec_event: Some(5),
    })));
    e.set_attribution(Some(Arc::new(Attribution {
        container_id: Some("ab".repeat(32)),
        runtime: Some("containerd"),
        pod_uid: Some("0b0e-11".into()),
        qos: Some("Burstable"),
        unit: Some("kubepods.slice".into()),
        untrusted: None,
    })));
    let v = encode(&e);
    assert_eq!(v["@timestamp"], "2023-11-14T22:13:20.250Z");
    assert_eq!(
        v["process"]["parent"],
        serde_json::json!({"pid": 10, "name": "bash", "executable": "/usr/bin/bash"})
    );
    assert_eq!(v["auditd"]["parent"]["exec_sequence"], 5);
    assert_eq!(v["auditd"]["sequence"], 7);
    assert_eq!(v["container"]["id"], "ab".repeat(32));
    assert_eq!(v["container"]["runtime"], "containerd");
    assert_eq!(v["kubernetes"]["pod"]["uid"], "0b0e-11");
    assert_eq!(v["kubernetes"]["pod"]["qos_class"], "Burstable");
    assert_eq!(v["systemd"]["unit"], "kubepods.slice");
    assert_eq!(v["event"]["action"], "executed");
}

#[test]
fn an_event_without_records_is_an_error_document() {
    let e = Event::new(3, b"1700000000.000");
    let v = encode(&e);
    assert_eq!(v["error"]["message"], "messages is empty");
    assert_eq!(v["event"]["module"], "auditd");
    assert_eq!(v["service"]["type"], "auditd");
}
