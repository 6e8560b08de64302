//! The receive path end to end: one whole event, bursts through io_uring and recv, SIGTERM
//! during a burst, the multicast reader, the audit pid kept.

use crate::harness::*;

#[test]
fn exec_under_a_keyed_rule_gives_exactly_one_whole_event() {
    let Some(_k) = kernel() else { return };
    let dir = tempdir("exec");
    let statsd = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let rules = format!(
        "rules:\n  - -a exit,always -F arch=b64 -S execve -F exe={} -k e2e\n  - -e 1\nmetrics: {{ enabled: true, address: {} }}\n",
        echo_exe(),
        statsd.local_addr().unwrap()
    );
    let mut d = Daemon::start(&dir, "exec", &rules);
    d.wait_ready();
    let marker = echo_seen_by(&d, "e2e");
    let lines = d.lines();
    let (status, log) = d.terminate();
    assert!(status.success(), "exit {status}: {log}");
    assert_released(&log);
    assert!(
        auditctl(&["-l"]).contains("No rules"),
        "the daemon deletes its rules at exit"
    );
    assert_eq!(
        status_field("enabled"),
        _k.enabled_at_start,
        "enabled restored"
    );

    let events: Vec<Value> = lines
        .iter()
        .filter(|l| l.contains(&marker))
        .map(|l| parse(l))
        .collect();
    assert_eq!(
        events.len(),
        1,
        "exactly one event for the exec: {lines:#?}"
    );
    let ev = &events[0];
    let t = types(ev);
    for want in [1300, 1309, 1307, 1302, 1327] {
        assert!(t.contains(&want), "record type {want} missing from {t:?}");
    }
    assert!(!t.contains(&1320), "EOE is not printed");
    assert_eq!(ev["rule_key"], "e2e");
    assert_eq!(ev["uid_map"]["0"], "root");
    let execve = ev["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["type"] == 1309)
        .unwrap();
    assert_eq!(
        execve["data"].as_str().unwrap(),
        format!("argc=2 a0=\"/bin/echo\" a1=\"{marker}\"")
    );
    assert!(ev["timestamp"].as_str().unwrap().contains('.'));

    // The final metrics report: pauditd's counters and the kernel gauges.
    statsd
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = vec![0u8; 65536];
    let mut metrics = String::new();
    while let Ok(n) = statsd.recv(&mut buf) {
        metrics.push_str(&String::from_utf8_lossy(&buf[..n]));
        metrics.push('\n');
    }
    let written = std::fs::read_to_string(dir.join("exec.jsonl"))
        .unwrap()
        .lines()
        .count();
    assert!(
        metrics.contains(&format!(".output.file.written:{written}|c")),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l.contains(".messages.total:") && l.ends_with("|c")),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l.contains(".kernel.lost:") && l.ends_with("|g")),
        "{metrics}"
    );
}

#[test]
fn a_burst_of_20000_events_is_written_whole_with_nothing_lost_via_io_uring() {
    if let Some(log) = burst_of_20000("on") {
        assert!(log.contains("receiving with io_uring"), "{log}");
    }
}

#[test]
fn a_burst_of_20000_events_is_written_whole_with_nothing_lost_via_recv() {
    if let Some(log) = burst_of_20000("off") {
        assert!(!log.contains("receiving with io_uring"), "{log}");
    }
}

/// The burst through the receive path `engine.io_uring: <io_uring>`; returns the daemon's log
/// (`None`: skipped outside CI).
fn burst_of_20000(io_uring: &str) -> Option<String> {
    let _k = kernel()?;
    let dir = tempdir(&format!("burst-{io_uring}"));
    let rules = load_rules(8192) + &format!("engine: {{ io_uring: {io_uring} }}\n");
    let mut d = Daemon::start(&dir, "burst", &rules);
    d.wait_ready();
    let lost_before = status_field("lost");
    let out = Command::new(loadgen())
        .args(["--count", "20000"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let count = |d: &Daemon| {
        d.lines()
            .iter()
            .filter(|l| l.contains("\"rule_key\":\"load\""))
            .count()
    };
    wait_for("20000 load events", 120, || count(&d) >= 20000);
    std::thread::sleep(Duration::from_millis(300));
    let lost_after = status_field("lost");
    let lines = d.lines();
    let (status, log) = d.terminate();
    assert!(status.success(), "{log}");
    assert_released(&log);
    let load: Vec<Value> = lines
        .iter()
        .filter(|l| l.contains("\"rule_key\":\"load\""))
        .map(|l| parse(l))
        .collect();
    assert_eq!(load.len(), 20000, "every event written once");
    let mut serials: Vec<u64> = load
        .iter()
        .map(|e| e["sequence"].as_u64().unwrap())
        .collect();
    serials.sort_unstable();
    serials.dedup();
    assert_eq!(serials.len(), 20000, "no duplicates");
    assert!(
        load.iter()
            .all(|e| types(e).contains(&1300) && types(e).contains(&1327)),
        "whole events"
    );
    assert_eq!(lost_after, lost_before, "kernel lost records");
    assert!(log.contains("lost=0"), "{log}");
    Some(log)
}

#[test]
fn sigterm_during_a_burst_writes_every_received_event_and_releases_the_pid() {
    let Some(_k) = kernel() else { return };
    let dir = tempdir("term");
    let mut d = Daemon::start(&dir, "term", &load_rules(8192));
    d.wait_ready();
    let mut gen = Command::new(loadgen())
        .args(["--count", "3000000"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the burst to start", 30, || d.lines().len() > 1000);
    let (status, log) = d.terminate();
    let _ = gen.kill();
    let _ = gen.wait();
    assert!(status.success(), "{log}");
    assert_released(&log);
    let lines = std::fs::read_to_string(dir.join("term.jsonl")).unwrap();
    let written = lines.lines().count();
    for l in lines.lines() {
        parse(l); // every line whole JSON
    }
    let emitted: usize = log
        .split_whitespace()
        .find_map(|w| w.strip_prefix("events_emitted="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no summary in log: {log}"));
    assert_eq!(written, emitted, "every completed event written");
    assert!(
        log.contains(&format!("output file: written={written} lost=0")),
        "{log}"
    );
    assert!(written > 1000);
}

#[test]
fn multicast_reader_beside_the_audit_daemon_sees_the_same_events() {
    let Some(_k) = kernel() else { return };
    let dir = tempdir("mcast");
    let rules = echo_rules();
    let mut holder = Daemon::start(&dir, "holder", &rules);
    holder.wait_ready();

    // A second unicast daemon is refused while the first holds the pid.
    let cfg = dir.join("second.yaml");
    std::fs::write(
        &cfg,
        format!("output: {{ stdout: {{ enabled: true }} }}\n{rules}"),
    )
    .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_pauditd"))
        .arg("-config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("another audit daemon"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    let mut reader = Daemon::start(&dir, "reader", "netlink: { mode: multicast }\n");
    wait_for("multicast reader start", 30, || {
        reader
            .log()
            .contains("Reading the audit log multicast group")
    });
    let _ = &mut reader;
    let marker = format!("pauditd-mcast-{}", std::process::id());
    echo(&marker);
    let find = |d: &Daemon| d.lines().into_iter().find(|l| l.contains(&marker));
    wait_for("the event at both", 20, || {
        find(&holder).is_some() && find(&reader).is_some()
    });
    assert_eq!(find(&holder), find(&reader), "identical lines");
    let (st, log) = reader.terminate();
    assert!(st.success(), "{log}");
    assert_eq!(
        status_field("pid") as u32,
        holder.child.id(),
        "the reader must not touch the audit pid"
    );
    let (st, log) = holder.terminate();
    assert!(st.success(), "{log}");
    assert_released(&log);
}

/// Another process asking for the audit pid while we hold it: the kernel refuses it (a live
/// daemon cannot be replaced), we keep the pid and keep receiving. (The daemon's detection of
/// a foreign pid, logged and counted as `kernel.audit_pid_taken`, covers the case where the
/// kernel dropped us first.)
#[test]
fn another_process_cannot_take_the_audit_pid_from_the_running_daemon() {
    let Some(_k) = kernel() else { return };
    let dir = tempdir("steal");
    let mut d = Daemon::start(&dir, "steal", &echo_rules());
    d.wait_ready();
    let ours = d.child.id() as u64;
    assert_eq!(status_field("pid"), ours);
    let thief = Command::new(env!("CARGO_BIN_EXE_pauditd-drain"))
        .output()
        .unwrap();
    assert!(!thief.status.success());
    let err = String::from_utf8_lossy(&thief.stderr);
    assert!(err.contains("File exists"), "{err}");
    assert_eq!(status_field("pid"), ours, "the pid stayed ours");
    echo_seen_by(&d, "steal");
    let (st, log) = d.terminate();
    assert!(st.success(), "{log}");
    assert!(!log.contains("not by us"), "{log}");
    assert_released(&log);
}
