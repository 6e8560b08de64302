//! Outputs end to end through `replay`: syslog, statsd, HTTPS with a client certificate, the
//! notification service, SIGUSR1's reopen, a reader that exits, a slow service, SIGTERM
//! mid-replay, UDP to nobody, a full device.

use super::*;

#[test]
fn replay_delivers_every_event_to_a_syslog_receiver() {
    use std::os::unix::net::UnixDatagram;
    let dir = tempdir("syslog");
    let sock = dir.join("log.sock");
    let rx = UnixDatagram::bind(&sock).unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let cfg = write_config(
        &dir,
        &format!("output:\n  syslog: {{ enabled: true, address: {}, tag: audit-thing, priority: 129 }}\n", sock.display()),
    );
    let o = replay_edge_cases(&cfg);
    assert!(o.status.success(), "{}", stderr(&o));
    let expected = std::fs::read_to_string(root().join("tests/data/edge-cases.json")).unwrap();
    let mut buf = vec![0u8; 65536];
    for line in expected.lines() {
        let n = rx.recv(&mut buf).unwrap();
        let msg = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(msg.starts_with("<129>"), "{msg}");
        let body = msg.split_once("]: ").unwrap().1;
        assert_eq!(body, format!("{line}\n"));
        assert!(msg.contains(" audit-thing["), "{msg}");
    }
    assert!(
        stderr(&o).contains("output syslog: written=6 lost=0"),
        "{}",
        stderr(&o)
    );
}

fn short_host() -> String {
    let h = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    h.trim().split('.').next().unwrap().to_string()
}

/// Every `name:value|type` line of the datagrams waiting on `rx`.
pub fn statsd_lines(rx: &std::net::UdpSocket) -> Vec<String> {
    rx.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = vec![0u8; 65536];
    let mut lines = Vec::new();
    while let Ok(n) = rx.recv(&mut buf) {
        lines.extend(
            String::from_utf8_lossy(&buf[..n])
                .lines()
                .map(str::to_string),
        );
    }
    lines
}

#[test]
fn replay_sends_pauditd_metrics_to_a_statsd_listener() {
    let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let dir = tempdir("statsd");
    let cfg = write_config(
        &dir,
        &format!(
            "output: {{ stdout: {{ enabled: true }} }}\nmetrics: {{ enabled: true, address: {}, sample_rate: 0.5 }}\nfilters:\n  - {{ key: exec, regex: sh }}\n",
            rx.local_addr().unwrap()
        ),
    );
    let o = replay_edge_cases(&cfg);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines = statsd_lines(&rx);
    let p = format!("pauditd.{}.", short_host());
    for want in [
        "messages.total:23|c",
        "messages.filtered:1|c",
        "events.emitted:5|c",
        "records.dropped.bad_header:2|c",
        "records.dropped.type_out_of_range:2|c",
        "output.stdout.written:5|c",
    ] {
        assert!(
            lines.contains(&format!("{p}{want}")),
            "{want} not in {lines:#?}"
        );
    }
    assert!(
        !lines.iter().any(|l| l.contains("netlink_dropped")),
        "zero counters are not sent"
    );
}

#[test]
fn replay_delivers_every_event_over_https_with_a_client_certificate_and_metrics() {
    let dir = tempdir("https");
    let pki = httpd::Pki::new(&dir);
    let (cert, key) = (dir.join("client.pem"), dir.join("client.key"));
    let client_der = pki.client("pauditd", &cert, &key);
    let server = httpd::Server::tls(pki.server_config());
    let statsd = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let cfg = write_config(
        &dir,
        &format!(
            "output:\n  http:\n    enabled: true\n    url: {}\n    worker_count: 2\n    buffer_size: 2\n    trace_header_name: X-Audit-Trace\n    ssl: {{ enabled: true, client_cert: {}, client_key: {}, ca_cert: {} }}\nmetrics: {{ enabled: true, address: {}, sample_rate: 1 }}\n",
            server.url("https", "/events"),
            cert.display(),
            key.display(),
            pki.ca_pem.display(),
            statsd.local_addr().unwrap()
        ),
    );
    let o = replay_edge_cases(&cfg);
    assert!(o.status.success(), "{}", stderr(&o));
    // buffer_size 2 < 6 events: replay waits for room instead of dropping.
    let expected = std::fs::read_to_string(root().join("tests/data/edge-cases.json")).unwrap();
    let mut got: Vec<String> = server
        .requests()
        .iter()
        .map(|r| {
            assert_eq!(r.client_cert.as_deref(), Some(&client_der[..]));
            assert!(r.header("x-audit-trace").is_some());
            String::from_utf8(r.body.clone()).unwrap()
        })
        .collect();
    let mut want: Vec<String> = expected.lines().map(|l| format!("{l}\n")).collect();
    // Two workers: arrival order may differ from completion order.
    got.sort();
    want.sort();
    assert_eq!(got, want);
    assert!(
        stderr(&o).contains("output http: written=6 lost=0"),
        "{}",
        stderr(&o)
    );
    let lines = statsd_lines(&statsd);
    let p = format!("pauditd.{}.", short_host());
    for want in [
        "http_writer.total_messages:6|c",
        "http_writer.delivered:6|c",
        "http_code.200:6|c",
        "output.http.written:6|c",
    ] {
        assert!(
            lines.contains(&format!("{p}{want}")),
            "{want} not in {lines:#?}"
        );
    }
    let latencies = lines
        .iter()
        .filter(|l| l.starts_with(&format!("{p}http_writer.latency:")) && l.ends_with("|ms"))
        .count();
    assert_eq!(latencies, 6, "{lines:#?}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("{p}latency:")) && l.ends_with("|ms")),
        "pauditd's per-write latency timing: {lines:#?}"
    );
}

#[test]
fn replay_to_the_notification_service_sends_keyed_events_and_counts_topics() {
    let dir = tempdir("notif");
    let server = httpd::Server::plain();
    let statsd = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let cfg = write_config(
        &dir,
        &format!(
            "output:\n  http:\n    enabled: true\n    url: {}\n    worker_count: 1\n    response_body_transformer: notification-service\n    notification_service_transformer:\n      extra_attributes: {{ cluster: c1 }}\nmetrics: {{ enabled: true, address: {} }}\n",
            server.url("http", "/notify"),
            statsd.local_addr().unwrap()
        ),
    );
    let o = replay_edge_cases(&cfg);
    assert!(o.status.success(), "{}", stderr(&o));
    let topics: Vec<String> = server
        .requests()
        .iter()
        .map(|r| {
            let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(v["attributes"]["cluster"], "c1");
            assert_eq!(v["attributes"]["hostname"], short_host());
            assert_eq!(v["version"], "1.0.0");
            // pauditd takes the topic from the encoded text, escapes and all.
            let topic = v["topic"].as_str().unwrap().to_string();
            let key = serde_json::to_string(&v["data"]["rule_key"]).unwrap();
            assert_eq!(format!("\"{topic}\""), key);
            topic
        })
        .collect();
    // edge-cases.log: keys (null), exec, key1\x01abcd, tty, net and one without a key.
    assert_eq!(topics, ["exec", "key1\\u0001abcd", "tty", "net"]);
    let lines = statsd_lines(&statsd);
    let p = format!("pauditd.{}.", short_host());
    for want in [
        "notif-service-transformer.topic.no-topic:2|c",
        "notif-service-transformer.topic.exec:1|c",
        "notif-service-transformer.topic.key1_u0001abcd:1|c",
        "http_writer.skipped:2|c",
    ] {
        assert!(
            lines.contains(&format!("{p}{want}")),
            "{want} not in {lines:#?}"
        );
    }
}

#[test]
fn sigusr1_reopens_the_file_output() {
    let dir = tempdir("usr1");
    let log = dir.join("out.log");
    let cfg = write_config(
        &dir,
        &format!(
            "output:\n  file: {{ enabled: true, path: {} }}\n",
            log.display()
        ),
    );
    let mut child = pauditd()
        .args(["replay", "-", "--config"])
        .arg(&cfg)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(EVENT.as_bytes()).unwrap();
    stdin.flush().unwrap();
    wait_for(|| std::fs::read_to_string(&log).is_ok_and(|t| t.lines().count() == 1));
    let rotated = dir.join("out.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    // SAFETY: plain kill(2) on our own child's pid.
    assert_eq!(unsafe { libc_kill(child.id() as i32, 10) }, 0);
    // The signal is taken (its handler sets the reopen flag) before the next event is sent:
    // no longer pending for the process.
    wait_for(|| !signal_pending(child.id(), 10));
    stdin
        .write_all(EVENT.replace(":5)", ":6)").as_bytes())
        .unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(std::fs::read_to_string(&rotated)
        .unwrap()
        .starts_with("{\"sequence\":5,"));
    let fresh = std::fs::read_to_string(&log).unwrap();
    assert!(
        fresh.starts_with("{\"sequence\":6,") && fresh.lines().count() == 1,
        "{fresh}"
    );
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

#[test]
fn replay_into_a_pipe_whose_reader_exits_stops_at_once_and_counts() {
    let input = std::env::temp_dir().join(format!("pauditd-cli-head-{}.log", std::process::id()));
    std::fs::write(&input, many_events(200_000)).unwrap();
    let mut child = pauditd()
        .arg("replay")
        .arg(&input)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // `| head -1`: read one line, then go away.
    let mut first = String::new();
    {
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        std::io::BufRead::read_line(&mut out, &mut first).unwrap();
    }
    assert!(first.starts_with("{\"sequence\":1,"), "{first}");
    let status = wait_exit(&mut child, 60);
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    let _ = std::fs::remove_file(&input);
    assert!(!status.success(), "events were lost: exit 1\n{err}");
    assert!(err.contains("the destination closed"), "{err}");
    // Said once, not per batch.
    assert_eq!(err.matches("the destination closed").count(), 1, "{err}");
    assert!(!err.contains("retrying"), "{err}");
    assert_eq!(accounting_field(&err, "stdout", "in_flight"), 0, "{err}");
    let received = accounting_field(&err, "stdout", "received");
    assert_eq!(
        accounting_field(&err, "stdout", "written") + accounting_field(&err, "stdout", "lost"),
        received,
        "{err}"
    );
    assert!(received < 200_000, "reading stopped early: {err}");
}

#[test]
fn replay_waits_for_a_slow_service_while_it_makes_progress() {
    let dir = tempdir("slowhttp");
    let server = httpd::Server::plain();
    server.set_delay(Duration::from_millis(300));
    // Each answer takes 0.3 s, 20 events take 6 s: far past `shutdown_timeout`, which only
    // bounds how long replay waits without progress.
    let cfg = write_config(
        &dir,
        &format!(
            "output:\n  http:\n    enabled: true\n    url: {}\n    worker_count: 1\n    buffer_size: 1\nshutdown_timeout: 2s\n",
            server.url("http", "/slow")
        ),
    );
    let o = run_with_stdin(
        &["replay", "-", "--config", cfg.to_str().unwrap()],
        &many_events(20),
    );
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("output http: written=20 lost=0"), "{err}");
    assert_eq!(server.requests().len(), 20);
}

#[test]
fn sigterm_during_a_replay_to_a_slow_reader_ends_on_a_whole_line_with_a_summary() {
    let input = std::env::temp_dir().join(format!("pauditd-cli-term-{}.log", std::process::id()));
    std::fs::write(&input, many_events(100_000)).unwrap();
    let mut child = pauditd()
        .arg("replay")
        .arg(&input)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let err_pipe = child.stderr.take().unwrap();
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut { err_pipe }, &mut s);
        s
    });
    // A slow reader: 4 KiB every 10 ms; SIGTERM after half a second.
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let start = Instant::now();
    let mut signalled = false;
    loop {
        if !signalled && start.elapsed() > Duration::from_millis(500) {
            // SAFETY: kill(2) on our own child.
            assert_eq!(unsafe { libc_kill(child.id() as i32, 15) }, 0);
            signalled = true;
        }
        let n = std::io::Read::read(&mut out, &mut buf).unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        std::thread::sleep(Duration::from_millis(10));
    }
    let _status = wait_exit(&mut child, 60);
    let err = err_reader.join().unwrap();
    let _ = std::fs::remove_file(&input);
    let text = String::from_utf8(got).unwrap();
    assert!(text.ends_with('\n'), "the last line is whole");
    let lines = text.lines().count() as u64;
    for l in text.lines() {
        serde_json::from_str::<serde_json::Value>(l).unwrap();
    }
    assert!(lines < 100_000, "stopped early");
    assert!(err.contains("replay done:"), "{err}");
    assert_eq!(accounting_field(&err, "stdout", "written"), lines, "{err}");
    assert_eq!(accounting_field(&err, "stdout", "in_flight"), 0, "{err}");
}

#[test]
fn syslog_over_udp_to_nobody_is_counted_not_claimed_written() {
    let dir = tempdir("udpnobody");
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = write_config(
        &dir,
        &format!(
            "output:\n  syslog: {{ enabled: true, network: udp, address: '127.0.0.1:{port}', attempts: 1 }}\n"
        ),
    );
    let o = run_with_stdin(
        &["replay", "-", "--config", cfg.to_str().unwrap()],
        &many_events(40),
    );
    let err = stderr(&o);
    assert!(!o.status.success(), "{err}");
    let lost = accounting_field(&err, "syslog", "lost");
    assert!(lost > 0, "refusals are losses: {err}");
    assert_eq!(
        accounting_field(&err, "syslog", "written") + lost,
        40,
        "{err}"
    );
}

#[test]
fn a_file_output_on_a_full_device_fails_fast_with_few_log_lines() {
    let dir = tempdir("devfull");
    let cfg = write_config(
        &dir,
        "output:\n  file: { enabled: true, path: /dev/full, attempts: 2 }\n",
    );
    let o = run_with_stdin(
        &["replay", "-", "--config", cfg.to_str().unwrap()],
        &many_events(5000),
    );
    let err = stderr(&o);
    assert!(!o.status.success(), "{err}");
    assert_eq!(accounting_field(&err, "file", "lost"), 5000, "{err}");
    assert!(!err.contains("torn line"), "{err}");
    let errors = err.lines().filter(|l| l.contains("ERROR")).count();
    assert!(errors <= 12, "{errors} error lines for 5000 events:\n{err}");
}
