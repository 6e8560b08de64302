//! Filters and formats end to end: the config's filters, `event_filters` on decoded fields,
//! each output's own format.

use super::*;

#[test]
fn config_filters_and_fan_out_to_file_and_stdout() {
    let dir = tempdir("fanout");
    let log = dir.join("out.log");
    let cfg = write_config(
        &dir,
        &format!(
            "output:\n  stdout: {{ enabled: true }}\n  file: {{ enabled: true, path: {}, mode: 0640 }}\nfilters:\n  - {{ key: exec, regex: 'a0=\"sh\"' }}\n",
            log.display()
        ),
    );
    let o = replay_edge_cases(&cfg);
    assert!(o.status.success(), "{}", stderr(&o));
    let file = std::fs::read(&log).unwrap();
    assert_eq!(o.stdout, file, "every sink gets the same lines");
    let text = String::from_utf8(file).unwrap();
    assert_eq!(
        text.lines().count(),
        5,
        "serial 101 (key exec) filtered out"
    );
    assert!(!text.contains("\"sequence\":101,"));
    assert!(stderr(&o).contains("events_filtered=1"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&log).unwrap().permissions().mode() & 0o777,
        0o640
    );
}

/// `event_filters` on decoded fields: tried in order after pauditd's, the first match
/// decides, each counted (in the summary line and as `filters.<name>.matched`).
#[test]
fn event_filters_decide_on_decoded_fields_in_order() {
    let dir = tempdir("eventfilters");
    let input = dir.join("in.log");
    let curl = |serial: u32, uid: u32, saddr: &str| {
        format!(
            "type=SYSCALL msg=audit(1.000:{serial}): arch=c000003e syscall=42 success=yes exit=0 pid=9 auid={uid} uid={uid} comm=\"curl\" exe=\"/usr/bin/curl\" key=\"net\"\ntype=SOCKADDR msg=audit(1.000:{serial}): saddr={saddr}\ntype=EOE msg=audit(1.000:{serial}): \n"
        )
    };
    let text = curl(1, 0, "020001BB0A010203")  // root to 10.1.2.3:443: kept by the first
        + &curl(2, 1000, "020001BB08080808") // user to 8.8.8.8: dropped by the second
        + "type=SYSCALL msg=audit(1.000:3): arch=c000003e syscall=59 success=yes exit=0 pid=9 auid=0 uid=0 comm=\"ls\" exe=\"/usr/bin/ls\" key=(null)\ntype=EOE msg=audit(1.000:3): \n"
        + "type=SYSCALL msg=audit(1.000:4): arch=c000003e syscall=59 success=yes exit=0 pid=9 auid=0 uid=0 comm=\"ls\" exe=\"/usr/bin/ls\" key=\"exec\"\ntype=EOE msg=audit(1.000:4): \n";
    std::fs::write(&input, text).unwrap();
    let cfg = write_config(
        &dir,
        "output: {stdout: {enabled: true}}\nevent_filters:\n  - {name: keep-root-net, action: keep, uid: root, addr: 10.0.0.0/8, port: 443}\n  - {name: drop-curl, exe: '/usr/bin/cu*'}\n  - {name: drop-unkeyed, key: ''}\n",
    );
    let o = pauditd()
        .args(["replay", "--passwd", "tests/data/passwd"])
        .arg(&input)
        .arg("-config")
        .arg(&cfg)
        .current_dir(root())
        .env("PAUDITD_LOG", "info")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let seqs: Vec<i64> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["sequence"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(seqs, vec![1, 4]);
    let e = stderr(&o);
    assert!(
        e.contains("events_filtered=2")
            && e.contains("filter.keep-root-net=1 filter.drop-curl=1 filter.drop-unkeyed=1"),
        "{e}"
    );
}

/// Each output in its own `format`: stdout pauditd's, the file enriched, both encoded once
/// per batch, the same events in the same order, with and without encoder threads.
#[test]
fn each_output_takes_its_own_format() {
    let dir = tempdir("formats");
    let log = dir.join("out.log");
    let golden = std::fs::read(root().join("tests/data/edge-cases.json")).unwrap();
    let mut enriched_runs = Vec::new();
    for workers in [0, 2] {
        let _ = std::fs::remove_file(&log);
        let cfg = write_config(
            &dir,
            &format!(
                "output:\n  stdout: {{ enabled: true }}\n  file: {{ enabled: true, path: {}, format: enriched }}\nengine: {{ encode_workers: {workers} }}\n",
                log.display()
            ),
        );
        let o = replay_edge_cases(&cfg);
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(o.stdout, golden, "stdout stays byte-exact pauditd");
        let text = std::fs::read_to_string(&log).unwrap();
        let sequences = |t: &str, key: &str| -> Vec<i64> {
            t.lines()
                .map(|l| {
                    serde_json::from_str::<serde_json::Value>(l).unwrap()[key]
                        .as_i64()
                        .unwrap()
                })
                .collect()
        };
        assert_eq!(
            sequences(&text, "sequence"),
            sequences(&String::from_utf8_lossy(&golden), "sequence"),
            "the same events, in order"
        );
        assert!(
            text.lines().all(|l| l.starts_with("{\"version\":2,")),
            "{text}"
        );
        enriched_runs.push(text);
    }
    assert_eq!(
        enriched_runs[0], enriched_runs[1],
        "encoder threads change nothing"
    );
    // The notification-service transformer reads pauditd's format: refused with enriched.
    let cfg = write_config(
        &dir,
        "output:\n  http: { enabled: true, url: 'http://127.0.0.1:9/', format: enriched, response_body_transformer: notification-service }\n",
    );
    let o = pauditd().arg("check-config").arg(&cfg).output().unwrap();
    assert!(
        stderr(&o).contains(
            "output.http.format: the notification-service transformer reads pauditd's format"
        ),
        "{}",
        stderr(&o)
    );
}
