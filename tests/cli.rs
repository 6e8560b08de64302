//! The binary as an operator runs it: exit codes, one-line errors, bad input, outputs.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[path = "support/bin.rs"]
mod bin;
use bin::{pauditd, run_with_stdin, stderr};

fn tempdir(tag: &str) -> PathBuf {
    bin::tempdir("cli", tag)
}

const EVENT: &str =
    "type=SYSCALL msg=audit(1.000:5): syscall=59 uid=0 key=\"k\"\ntype=EOE msg=audit(1.000:5): \n";

/// A widely used public rule set (tests/data/rules): after its `-i`, the lines auditctl
/// would skip (an unknown user, `-k -F ...`, an unknown field) are warnings that name the
/// line; `--strict` makes them errors. A bad line before `-i` stays an error.
#[test]
fn check_config_warns_of_lines_skipped_after_i_and_strict_refuses_them() {
    let dir = tempdir("skipped");
    let rules = root().join("tests/data/rules/neo23x0-audit.rules");
    let cfg = dir.join("public.yaml");
    std::fs::write(
        &cfg,
        format!(
            "output: {{stdout: {{enabled: true}}}}\nrules_files: ['{}']\n",
            rules.display()
        ),
    )
    .unwrap();
    let o = pauditd().arg("check-config").arg(&cfg).output().unwrap();
    let e = stderr(&o);
    assert!(o.status.success(), "{e}");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("rule line(s) skipped after -c/-i, as auditctl would"),
        "{out}"
    );
    let r = rules.display();
    for line in [
        format!("rules: {r}:487: -a always,exit -F path=/usr/bin/setfiles -F perm=x -F auid>=500 -F auid!=4294967295 -k -F T1078_Valid_Accounts: T1078_Valid_Accounts: not an option auditctl rules take; skipped (-c/-i)"),
        format!("rules: {r}:718: -a always,exit -F arch=b32 -S connect -F dir=+ -F obj=/opt/CrowdStrike/falcon-sensor -F key=crowdstrike_network: -F \"obj\": unknown field; skipped (-c/-i)"),
    ] {
        assert!(e.contains(&line), "{line} missing in {e}");
    }
    let strict = pauditd()
        .args(["check-config", "--strict"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(strict.status.code(), Some(1));
    let e = stderr(&strict);
    assert!(e.contains("invalid config"), "{e}");
    assert!(e.contains(":718: "), "{e}");
    // Before -i the same line is an error.
    std::fs::write(
        &cfg,
        "output: {stdout: {enabled: true}}\nrules:\n  - -a always,exit -F arch=b64 -S connect -F obj=/x\n  - -i\n  - -a always,exit -F arch=b64 -S connect -F obj=/y\n",
    )
    .unwrap();
    let o = pauditd().arg("check-config").arg(&cfg).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("invalid config (1 error): rules: rule #1: -a always,exit -F arch=b64 -S connect -F obj=/x: -F \"obj\": unknown field"),
        "{e}"
    );
    assert!(!e.contains("rule #3"), "{e}");
}

#[test]
fn version_in_both_styles() {
    for flag in ["-version", "--version"] {
        let o = pauditd().arg(flag).output().unwrap();
        assert!(o.status.success());
        assert_eq!(
            String::from_utf8_lossy(&o.stdout).trim(),
            format!("pauditd {}", env!("CARGO_PKG_VERSION"))
        );
    }
}

#[test]
fn check_config_accepts_examples_and_rejects_broken_with_key_paths() {
    let dir = tempdir("check");
    // The shipped example writes to /var/log/pauditd, which the package creates: checked
    // here with that directory moved to a temporary one.
    let example = std::fs::read_to_string(root().join("examples/pauditd.yaml.example"))
        .unwrap()
        .replace("/var/log/pauditd/", &format!("{}/", dir.display()));
    assert!(example.contains(&format!("path: {}/pauditd.log", dir.display())));
    std::fs::write(dir.join("example.yaml"), example).unwrap();
    for cfg in [
        dir.join("example.yaml"),
        root().join("tests/data/pauditd-upstream-example.yaml"),
    ] {
        let o = pauditd()
            .arg("check-config")
            .arg(&cfg)
            .current_dir(root())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}: {}", cfg.display(), stderr(&o));
        assert!(String::from_utf8_lossy(&o.stdout).contains("OK"));
    }
    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        "output:\n  file: { enabled: true, mode: nope }\nrules: []\nfilters:\n  - { key: k }\n",
    )
    .unwrap();
    let o = pauditd().arg("check-config").arg(&bad).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert_eq!(e.lines().count(), 1, "one line: {e}");
    for path in [
        "output.file.mode:",
        "output.file.path:",
        "filters[0].regex:",
    ] {
        assert!(e.contains(path), "{path} missing in {e}");
    }
    let o = pauditd()
        .arg("check-config")
        .arg(dir.join("missing.yaml"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("cannot read config file"));
    // Rules are parsed as the native loader will: every bad line, with its origin.
    let rules_d = dir.join("rules.d");
    std::fs::create_dir_all(&rules_d).unwrap();
    std::fs::write(rules_d.join("10.rules"), "# ok\n-w /etc/passwd -p wa\n-a always,exit -F arch=b64 -S execve -F auid=nosuchuser-pauditd\n").unwrap();
    std::fs::write(
        &bad,
        format!(
            "output: {{stdout: {{enabled: true}}}}\nrules:\n  - -a always,exit -F arch=b64 -S nope\nrules_files: ['{}/*.rules']\n",
            rules_d.display()
        ),
    )
    .unwrap();
    let o = pauditd().arg("check-config").arg(&bad).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("rules: rule #1: -a always,exit -F arch=b64 -S nope: -S \"nope\": no such syscall on x86_64")
            || !cfg!(target_arch = "x86_64"),
        "{e}"
    );
    assert!(
        e.contains(&format!(
            "rules: {}/10.rules:3: -a always,exit -F arch=b64 -S execve -F auid=nosuchuser-pauditd: -F auid: \"nosuchuser-pauditd\" is not a number, `unset` or a known name",
            rules_d.display()
        )),
        "{e}"
    );
    std::fs::write(&bad, "rules: [\"-a exit,always -S execve\"]\n").unwrap();
    let o = pauditd().arg("check-config").arg(&bad).output().unwrap();
    assert!(
        stderr(&o).contains("No outputs were configured"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn daemon_mode_requires_a_config() {
    let o = pauditd().output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("A config file must be provided"));
}

#[test]
fn replay_from_stdin_with_garbage_counts_drops_and_keeps_going() {
    let mut input = Vec::new();
    input.extend_from_slice(b"\x00\x00\x00garbage\xff\xfe\n");
    input.extend(std::iter::repeat_n(b'A', 10 << 20)); // a 10 MB line
    input.push(b'\n');
    input.extend_from_slice(b"type=SYSCALL msg=audit(1.0\n");
    input.extend_from_slice(EVENT.as_bytes());
    let o = run_with_stdin(&["replay", "-"], &input);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8(o.stdout.clone()).unwrap();
    assert_eq!(out.lines().count(), 1);
    assert!(out.starts_with("{\"sequence\":5,"));
    let e = stderr(&o);
    assert!(e.contains("dropped.not_a_record=1"), "{e}");
    assert!(e.contains("dropped.line_too_long=1"), "{e}");
    assert!(e.contains("dropped.bad_header=1"), "{e}");
    assert!(!e.contains("panicked"));
}

#[test]
fn replay_of_nul_bytes_and_random_bytes_never_panics() {
    let o = run_with_stdin(&["replay"], &vec![0u8; 1 << 20]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(o.stdout.is_empty());
    assert!(stderr(&o).contains("dropped.not_a_record=1"));

    // Deterministic pseudo-random bytes with record-like fragments mixed in.
    let mut x: u64 = 0x9e3779b97f4a7c15;
    let mut input = Vec::new();
    for i in 0..200_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        match i % 1000 {
            0 => input.extend_from_slice(b"\ntype=SYSCALL msg=audit("),
            1 => input.extend_from_slice(b"):"),
            _ => input.push(x as u8),
        }
    }
    let o = run_with_stdin(&["replay"], &input);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("panicked"));
}

#[test]
fn replay_missing_file_is_one_line_error() {
    let o = pauditd()
        .args(["replay", "/nonexistent/audit.log"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("cannot open /nonexistent/audit.log"));
}

/// `pauditd replay` of tests/data/edge-cases.log with `cfg`, names from tests/data/passwd.
fn replay_edge_cases(cfg: &Path) -> Output {
    pauditd()
        .args([
            "replay",
            "--passwd",
            "tests/data/passwd",
            "tests/data/edge-cases.log",
            "--config",
        ])
        .arg(cfg)
        .current_dir(root())
        .output()
        .unwrap()
}

fn write_config(dir: &Path, body: &str) -> PathBuf {
    let p = dir.join("pauditd.yaml");
    std::fs::write(&p, body).unwrap();
    p
}

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

#[path = "../sinks/tests/support/httpd.rs"]
mod httpd;

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

fn wait_for(mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "condition not met in 20 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `n` whole events with serials 1..=n, as auditd log lines.
fn many_events(n: u64) -> Vec<u8> {
    let mut s = String::new();
    for i in 1..=n {
        s.push_str(&format!(
            "type=SYSCALL msg=audit(1.000:{i}): syscall=59 uid=0 key=\"k\"\ntype=EOE msg=audit(1.000:{i}): \n"
        ));
    }
    s.into_bytes()
}

/// The value of `name=` in the accounting line of output `output` in `log`.
fn accounting_field(log: &str, output: &str, name: &str) -> u64 {
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains(&format!("output {output}: written=")))
        .unwrap_or_else(|| panic!("no accounting for {output}: {log}"));
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{name}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} in {line}"))
}

/// Wait for `child` at most `secs` (no timing claim: a bound so a hang fails instead of
/// stalling the suite).
fn wait_exit(child: &mut std::process::Child, secs: u64) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if start.elapsed() > Duration::from_secs(secs) {
            let _ = child.kill();
            panic!("still running after {secs} s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
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

/// Whether signal `signo` is still pending for process `pid` (not yet taken by any thread).
fn signal_pending(pid: u32, signo: u32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .filter_map(|l| {
            l.strip_prefix("ShdPnd:")
                .or_else(|| l.strip_prefix("SigPnd:"))
        })
        .filter_map(|v| u64::from_str_radix(v.trim(), 16).ok())
        .any(|mask| mask & (1 << (signo - 1)) != 0)
}

#[test]
fn check_config_runs_the_daemons_checks_refuses_duplicates_and_strict_unknown_keys() {
    let dir = tempdir("check-strict");
    let cfg = |name: &str, body: &str| {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        p
    };
    let ok = "output: { stdout: { enabled: true } }\nrules: ['-w /etc/passwd -p wa']\n";
    // Users and groups the daemon would refuse at start-up.
    let users = cfg(
        "users.yaml",
        &format!("{ok}privileges: {{ user: nosuchuser-pauditd, group: nosuchgroup-pauditd }}\n"),
    );
    let o = pauditd().arg("check-config").arg(&users).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("privileges.user: unknown user \"nosuchuser-pauditd\"")
            && e.contains("privileges.group: unknown group \"nosuchgroup-pauditd\""),
        "{e}"
    );
    let owner = cfg(
        "owner.yaml",
        &format!(
            "rules: ['-w /etc/passwd -p wa']\noutput: {{ file: {{ enabled: true, path: {}/x.log, user: nosuchuser-pauditd }} }}\n",
            dir.display()
        ),
    );
    let o = pauditd().arg("check-config").arg(&owner).output().unwrap();
    assert!(
        stderr(&o).contains("output.file.user: unknown user \"nosuchuser-pauditd\""),
        "{}",
        stderr(&o)
    );
    // The daemon refuses the same config with the config-error status (78), before it
    // touches the kernel (so this runs without root).
    let o = pauditd().arg("-config").arg(&users).output().unwrap();
    assert_eq!(o.status.code(), Some(78), "{}", stderr(&o));
    assert!(stderr(&o).contains("privileges.user: unknown user"));
    // Duplicate keys: an error (YAML keys are unique; the second value would win silently).
    let dup = cfg(
        "dup.yaml",
        &format!("{ok}status: {{ socket: /a }}\nstatus: {{ socket: /b }}\n"),
    );
    let o = pauditd().arg("check-config").arg(&dup).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("duplicate key \"status\""),
        "{}",
        stderr(&o)
    );
    // Unknown keys: a warning, an error with --strict.
    let unknown = cfg("unknown.yaml", &format!("{ok}status: {{ sockt: /a }}\n"));
    let o = pauditd()
        .arg("check-config")
        .arg(&unknown)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("unknown key `status.sockt` (ignored)"));
    let o = pauditd()
        .args(["check-config", "--strict"])
        .arg(&unknown)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("status.sockt: unknown key (--strict)"),
        "{}",
        stderr(&o)
    );
    let o = pauditd()
        .args(["check-config", "--strict"])
        .arg(cfg("ok.yaml", ok))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn status_reads_its_socket_from_config_and_says_when_no_daemon_answers() {
    let dir = tempdir("status-config");
    let sock = dir.join("status.sock");
    let cfg = dir.join("c.yaml");
    std::fs::write(
        &cfg,
        format!(
            "output: {{ stdout: {{ enabled: true }} }}\nstatus: {{ socket: {} }}\n",
            sock.display()
        ),
    )
    .unwrap();
    let o = pauditd()
        .args(["status", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.starts_with("pauditd: no daemon answered: ")
            && err.contains(&sock.display().to_string()),
        "{err}"
    );
    // The kernel's own view, where AUDIT_GET may be asked (root).
    if is_root() {
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(out.starts_with("kernel: audit pid "), "{out}");
    }
    let o = pauditd()
        .args(["status", "--json", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["daemon"].is_null());
    assert!(v["error"].as_str().unwrap().contains("status.sock"));
    if is_root() {
        assert!(v["kernel"]["backlog_limit"].is_u64(), "{v}");
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
                .unwrap_or(false)
        })
        .unwrap_or(false)
}

/// Log lines carry the time, except when stderr is the journal stream systemd announced in
/// `JOURNAL_STREAM` (journald stamps lines itself).
#[test]
fn log_lines_carry_the_time_unless_stderr_is_the_journal() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempdir("logtime");
    let run = |journal: Option<&str>| -> String {
        let errfile = dir.join("stderr.txt");
        let f = std::fs::File::create(&errfile).unwrap();
        let m = f.metadata().unwrap();
        let mut c = pauditd();
        c.args(["replay", "-"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(f);
        match journal {
            Some("this") => {
                c.env("JOURNAL_STREAM", format!("{}:{}", m.dev(), m.ino()));
            }
            Some(other) => {
                c.env("JOURNAL_STREAM", other);
            }
            None => {
                c.env_remove("JOURNAL_STREAM");
            }
        }
        assert!(c.status().unwrap().success());
        std::fs::read_to_string(&errfile).unwrap()
    };
    let stamped = |log: &str| {
        log.lines().all(|l| {
            l.len() > 25
                && l.as_bytes()[4] == b'-'
                && &l[10..11] == "T"
                && l[..24].ends_with('Z')
                && l[24..].starts_with(" INFO: ")
        })
    };
    let log = run(None);
    assert!(log.contains("replay done: "), "{log}");
    assert!(stamped(&log), "{log}");
    // Inherited from a parent whose stderr was the journal, but ours is a file: stamped.
    assert!(stamped(&run(Some("1:2"))));
    let log = run(Some("this"));
    assert!(log.lines().all(|l| l.starts_with("INFO: ")), "{log}");
}

/// The container examples, linted: the DaemonSet has the minimal capabilities, hostPID and
/// hostNetwork, mounts what its ConfigMap's config names; that config passes check-config;
/// the Dockerfile is multi-stage and starts the daemon on the mounted config.
#[test]
fn container_examples_are_consistent_and_their_config_checks() {
    use serde::Deserialize;
    use serde_yaml::Value;
    let text =
        std::fs::read_to_string(root().join("examples/kubernetes/pauditd-daemonset.yaml")).unwrap();
    let docs: Vec<Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect();
    let kind = |k: &str| {
        docs.iter()
            .find(|d| d["kind"].as_str() == Some(k))
            .unwrap_or_else(|| panic!("no {k}"))
    };
    let (cm, ds) = (kind("ConfigMap"), kind("DaemonSet"));
    let spec = &ds["spec"]["template"]["spec"];
    assert_eq!(spec["hostPID"].as_bool(), Some(true));
    assert_eq!(spec["hostNetwork"].as_bool(), Some(true));
    let c = &spec["containers"][0];
    let sc = &c["securityContext"];
    assert_ne!(sc["privileged"].as_bool(), Some(true));
    assert_eq!(sc["capabilities"]["drop"][0].as_str(), Some("ALL"));
    let add: Vec<&str> = sc["capabilities"]["add"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(add, ["AUDIT_CONTROL", "AUDIT_READ"]);
    // Every mount has its volume, and the config's paths live on mounts.
    let mounts: Vec<(&str, &str)> = c["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap(),
                m["mountPath"].as_str().unwrap(),
            )
        })
        .collect();
    let volumes: Vec<&str> = spec["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    for (name, _) in &mounts {
        assert!(volumes.contains(name), "mount {name} has no volume");
    }
    let mounted = |path: &str| mounts.iter().any(|(_, m)| path.starts_with(m));
    let config = cm["data"]["pauditd.yaml"].as_str().unwrap();
    let parsed: Value = serde_yaml::from_str(config).unwrap();
    assert!(mounted(parsed["status"]["socket"].as_str().unwrap()));
    assert!(mounted(
        parsed["output"]["http"]["spool"]["dir"].as_str().unwrap()
    ));
    let args: Vec<&str> = c["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(args, ["-config", "/etc/pauditd/pauditd.yaml"]);
    assert!(mounts.contains(&("config", "/etc/pauditd")));
    // The ConfigMap's config is one the daemon accepts (strictly: no unknown keys).
    let dir = tempdir("daemonset");
    let cfg = dir.join("pauditd.yaml");
    std::fs::write(&cfg, config).unwrap();
    let o = pauditd()
        .args(["check-config", "--strict"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    // The image: multi-stage, the daemon on the config the DaemonSet mounts.
    let docker = std::fs::read_to_string(root().join("examples/Dockerfile")).unwrap();
    let froms = docker.lines().filter(|l| l.starts_with("FROM ")).count();
    assert_eq!(froms, 2, "a build stage and a runtime stage");
    assert!(docker.contains("COPY --from=build /src/target/release/pauditd /usr/bin/pauditd"));
    assert!(docker.contains(r#"CMD ["-config", "/etc/pauditd/pauditd.yaml"]"#));
    let ignore = std::fs::read_to_string(root().join(".dockerignore")).unwrap();
    assert!(
        ignore.lines().any(|l| l == "target"),
        "the build context would hold target/"
    );
}

/// Warnings from one call site are rate-limited, and what was not shown is counted: 15
/// unknown keys give 10 warnings and one line saying 5 more were not shown.
#[test]
fn repeated_warnings_are_rate_limited_with_a_count() {
    let dir = tempdir("ratelimit");
    let mut body = String::from("output: { stdout: { enabled: true } }\n");
    for i in 0..15 {
        body += &format!("unknown_{i}: 1\n");
    }
    let cfg = write_config(&dir, &body);
    let o = run_with_stdin(&["replay", "-", "--config", cfg.to_str().unwrap()], b"");
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert_eq!(err.matches("unknown key `unknown_").count(), 10, "{err}");
    assert!(
        err.contains("5 more line(s) like the last from src/main.rs:"),
        "{err}"
    );
    // --strict still lists every one.
    let o = pauditd()
        .args(["check-config", "--strict"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(stderr(&o).matches(": unknown key (--strict)").count(), 15);
}
