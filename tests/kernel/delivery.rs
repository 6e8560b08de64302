//! Delivery: outputs that are slow or dead hold back neither the kernel nor each other; the
//! spool survives `kill -9` and a crash loop; HTTP notifications.

use crate::harness::*;
use crate::httpd;

#[test]
fn live_events_reach_an_http_service_as_notifications() {
    let Some(_k) = kernel() else { return };
    let dir = tempdir("http");
    let server = httpd::Server::plain();
    // Daemon::start writes `output:` and the file output first: this block continues it.
    let cfg = format!(
        "  http:\n    enabled: true\n    url: {}\n    worker_count: 2\n    response_body_transformer: notification-service\n{}",
        server.url("http", "/notify"),
        echo_rules()
    );
    let mut d = Daemon::start(&dir, "http", &cfg);
    d.wait_ready();
    echo("to-http");
    wait_for("an e2e event in the file", 20, || {
        d.lines().iter().any(|l| l.contains("\"rule_key\":\"e2e\""))
    });
    let reqs = server.wait_for(1);
    let lines = d.lines();
    let (status, log) = d.terminate();
    assert!(status.success(), "{log}");
    assert_released(&log);
    let file_event = lines
        .iter()
        .find(|l| l.contains("\"rule_key\":\"e2e\""))
        .unwrap();
    let sent: Vec<Value> = reqs
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .filter(|v: &Value| v["topic"] == "e2e")
        .collect();
    assert_eq!(sent.len(), 1, "{reqs:?}");
    assert_eq!(sent[0]["data"], parse(file_event), "same event as the file");
    assert!(log.contains("output http: written="), "{log}");
    assert!(!log.contains("output http: written=0"), "{log}");
}

/// How the syslog receiver of [`outputs_stay_isolated`] misbehaves.
#[derive(Clone, Copy, Debug)]
enum BadReceiver {
    /// Reads for 1.5 s, then closes the connection and stops listening.
    ReadsThenCloses,
    /// Accepts and never reads.
    NeverReads,
}

/// The scenario: a file output beside a syslog output whose receiver dies, under
/// 10,000 audited calls/s for 15 s. The audited workload must keep its pace, the kernel
/// lose nothing, the file hold every event, SIGTERM finish in its bound, and every syslog
/// event be written, spooled or counted.
fn outputs_stay_isolated(bad: BadReceiver) {
    let Some(_k) = kernel() else { return };
    let dir = tempdir(&format!("isolated-{bad:?}"));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let receiver = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        match bad {
            BadReceiver::ReadsThenCloses => {
                drop(listener);
                conn.set_read_timeout(Some(Duration::from_millis(100)))
                    .unwrap();
                let end = Instant::now() + Duration::from_millis(1500);
                let mut buf = vec![0u8; 1 << 16];
                while Instant::now() < end {
                    let _ = std::io::Read::read(&mut conn, &mut buf);
                }
                None
            }
            // Keep both alive, reading nothing, until the test ends.
            BadReceiver::NeverReads => Some((conn, listener)),
        }
    });
    let spool = dir.join("spool");
    let cfg = format!(
        "  syslog:\n    enabled: true\n    network: tcp\n    address: {addr}\n    spool: {{ dir: {}, max_bytes: 1073741824 }}\nshutdown_timeout: 5s\n{}",
        spool.display(),
        load_rules(8192)
    );
    let mut d = Daemon::start(&dir, "isolated", &cfg);
    d.wait_ready();
    let lost_before = status_field("lost");
    let out = Command::new(loadgen())
        .args(["--rate", "10000", "--seconds", "15"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    let calls: u64 = report.split_whitespace().next().unwrap().parse().unwrap();
    let secs: f64 = report.split_whitespace().nth(3).unwrap().parse().unwrap();
    let count = |d: &Daemon| {
        d.lines()
            .iter()
            .filter(|l| l.contains("\"rule_key\":\"load\""))
            .count() as u64
    };
    wait_for("every load event in the file", 120, || count(&d) >= calls);
    let lost_after = status_field("lost");
    let in_file = count(&d);
    let t = Instant::now();
    let (status, log) = d.terminate();
    let stop_took = t.elapsed();
    let held = receiver.join().unwrap();
    drop(held);
    eprintln!(
        "{bad:?}: workload {calls} calls in {secs:.2} s ({:.0}/s); kernel lost {}; SIGTERM took {stop_took:?}",
        calls as f64 / secs,
        lost_after - lost_before
    );
    assert!(status.success(), "{log}");
    assert_released(&log);
    // The kernel never made the workload wait for us: it kept (nearly) its pace.
    assert!(
        calls as f64 / secs >= 9_000.0,
        "workload slowed to {:.0}/s: {report}",
        calls as f64 / secs
    );
    assert_eq!(lost_after, lost_before, "kernel lost records");
    assert_eq!(in_file, calls, "the file output holds every event");
    // Bounded: shutdown_timeout (5 s) plus one syslog send timeout, with room.
    assert!(
        stop_took < Duration::from_secs(15),
        "SIGTERM took {stop_took:?}: {log}"
    );
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("output syslog: written="))
        .unwrap_or_else(|| panic!("no syslog accounting: {log}"));
    let field = |name: &str| -> u64 {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} in {line}"))
    };
    eprintln!("{line}");
    assert_eq!(field("in_flight"), 0, "{line}");
    assert_eq!(
        field("written") + field("lost") + field("spooled"),
        field("received"),
        "{line}"
    );
    assert!(field("received") >= calls, "{line}");
    assert!(
        field("spooled") > 0,
        "the dead receiver's events wait in the spool: {line}"
    );
    assert!(log.contains("output file: written="), "{log}");
    assert!(
        log.contains(&format!(
            "output file: written={} lost=0",
            field("received")
        )),
        "the file output lost nothing: {log}"
    );
}

#[test]
fn a_syslog_receiver_that_closes_holds_back_neither_the_kernel_nor_the_file_output() {
    outputs_stay_isolated(BadReceiver::ReadsThenCloses);
}

#[test]
fn a_syslog_receiver_that_never_reads_holds_back_neither_the_kernel_nor_the_file_output() {
    outputs_stay_isolated(BadReceiver::NeverReads);
}

/// An HTTP output (one worker) with a spool in `spool` (more spool keys in `spool_keys`),
/// beside the file output, under the echo rules.
fn spooled_http(port: u16, spool: &Path, spool_keys: &str) -> String {
    format!(
        "  http:\n    enabled: true\n    url: http://127.0.0.1:{port}/audit\n    worker_count: 1\n    spool: {{ dir: {}{spool_keys} }}\n{}",
        spool.display(),
        echo_rules()
    )
}

/// Every request body the service received, as text.
fn bodies(server: &httpd::Server) -> Vec<String> {
    server
        .requests()
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect()
}

#[test]
fn spooled_events_survive_kill_9_and_arrive_after_restart() {
    let Some(_k) = kernel() else { return };
    let dir = tempdir("kill9");
    // Nobody listens on this port yet: every event goes to the spool.
    let port = free_port();
    let spool = dir.join("spool");
    let cfg = spooled_http(port, &spool, "");
    let mut d = Daemon::start(&dir, "kill9", &cfg);
    d.wait_ready();
    let markers: Vec<String> = (0..30)
        .map(|i| format!("pauditd-kill9-{i}-{}", std::process::id()))
        .collect();
    for m in &markers {
        echo(m);
    }
    let spooled = || -> String {
        let mut all = Vec::new();
        for e in std::fs::read_dir(&spool).into_iter().flatten().flatten() {
            if e.path().extension().is_some_and(|x| x == "seg") {
                all.extend(std::fs::read(e.path()).unwrap_or_default());
            }
        }
        String::from_utf8_lossy(&all).into_owned()
    };
    wait_for("every marker in the spool", 60, || {
        let s = spooled();
        markers.iter().all(|m| s.contains(m.as_str()))
    });
    // kill -9: no shutdown, no release. The kernel notices the dead pid by itself.
    d.kill_9();
    forget_dead_daemon();

    let server = httpd::Server::plain_at(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    let mut d = Daemon::start(&dir, "kill9-again", &cfg);
    d.wait_ready();
    let arrived = bodies;
    wait_for("every spooled event at the service", 60, || {
        let got = arrived(&server);
        markers
            .iter()
            .all(|m| got.iter().any(|b| b.contains(m.as_str())))
    });
    let (status, log) = d.terminate();
    assert!(status.success(), "{log}");
    assert_released(&log);
    assert!(log.contains("from an earlier run"), "{log}");
    // Delivered in the order they were spooled.
    let got = arrived(&server);
    let order: Vec<usize> = markers
        .iter()
        .map(|m| got.iter().position(|b| b.contains(m.as_str())).unwrap())
        .collect();
    let mut sorted = order.clone();
    sorted.sort_unstable();
    assert_eq!(order, sorted, "spooled events arrive in order");
}

/// `spool.write_ahead`: a destination that accepts and never answers holds every batch in
/// flight; `kill -9` then; after a restart with a working destination every event arrives.
/// (Without write-ahead the batches waiting in memory for the answer are lost: the README's
/// in-memory window.)
#[test]
fn write_ahead_loses_nothing_to_kill_9_while_the_destination_hangs() {
    let Some(_k) = kernel() else { return };
    let dir = tempdir("writeahead");
    // Accepts connections, reads nothing, answers nothing.
    let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = hung.local_addr().unwrap().port();
    hung.set_nonblocking(true).unwrap();
    let held: Arc<Mutex<Vec<std::net::TcpStream>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let acceptor = {
        let (held, stop) = (held.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                match hung.accept() {
                    Ok((s, _)) => held.lock().unwrap().push(s),
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        })
    };
    let spool = dir.join("spool");
    let cfg = spooled_http(port, &spool, ", write_ahead: true");
    let mut d = Daemon::start(&dir, "writeahead", &cfg);
    d.wait_ready();
    let markers: Vec<String> = (0..30)
        .map(|i| format!("pauditd-wal-{i}-{}", std::process::id()))
        .collect();
    for m in &markers {
        echo(m);
    }
    // Every event reached the file output, so the daemon read them all.
    wait_for("every marker at the file output", 30, || {
        let lines = d.lines();
        markers
            .iter()
            .all(|m| lines.iter().any(|l| l.contains(m.as_str())))
    });
    wait_for("the destination to be hung on a request", 30, || {
        !held.lock().unwrap().is_empty()
    });
    d.kill_9();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    acceptor.join().unwrap();
    held.lock().unwrap().clear();
    forget_dead_daemon();
    let server = httpd::Server::plain_at(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    let mut d = Daemon::start(&dir, "writeahead-again", &cfg);
    d.wait_ready();
    wait_for("every event at the working destination", 60, || {
        let got = bodies(&server);
        markers
            .iter()
            .all(|m| got.iter().any(|b| b.contains(m.as_str())))
    });
    let (status, log) = d.terminate();
    assert!(status.success(), "{log}");
    assert_released(&log);
}

/// A crash loop during an outage under load: 20 times, start, let events flow to a dead
/// destination, `kill -9` at a random moment. Every event that had reached the spool before
/// each kill arrives once the destination works, in the order the kernel produced them.
#[test]
fn a_crash_loop_during_an_outage_loses_nothing_spooled_and_keeps_order() {
    let Some(_k) = kernel() else { return };
    let dir = tempdir("crashloop");
    let port = free_port();
    let spool = dir.join("spool");
    let cfg = spooled_http(port, &spool, "");
    let in_spool = || -> Vec<String> {
        let mut found = Vec::new();
        for e in std::fs::read_dir(&spool).into_iter().flatten().flatten() {
            if e.path().extension().is_some_and(|x| x == "seg") {
                let text = String::from_utf8_lossy(&std::fs::read(e.path()).unwrap_or_default())
                    .into_owned();
                for w in text.split(['"', ' ', '\\']) {
                    if w.starts_with("pauditd-crash-") {
                        found.push(w.to_string());
                    }
                }
            }
        }
        found
    };
    let mut rng = u64::from(std::process::id()) | 1;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut seq = 0u64;
    let mut must_arrive = std::collections::BTreeSet::new();
    for round in 0..20 {
        let mut d = Daemon::start(&dir, &format!("crash{round}"), &cfg);
        d.wait_ready();
        let until = Instant::now() + Duration::from_millis(200 + next() % 600);
        while Instant::now() < until {
            echo(&format!("pauditd-crash-{:06}-{}", seq, std::process::id()));
            seq += 1;
        }
        // What is on disk now must survive this kill and every later one.
        must_arrive.extend(in_spool());
        d.kill_9();
        forget_dead_daemon();
    }
    assert!(
        must_arrive.len() > 100,
        "the outage was spooled: {}",
        must_arrive.len()
    );
    let server = httpd::Server::plain_at(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    let mut d = Daemon::start(&dir, "crash-final", &cfg);
    d.wait_ready();
    let arrived = || -> Vec<String> {
        let mut v = Vec::new();
        for r in server.requests() {
            for w in String::from_utf8_lossy(&r.body).split(['"', ' ', '\\']) {
                if w.starts_with("pauditd-crash-") {
                    v.push(w.to_string());
                }
            }
        }
        v
    };
    wait_for("every spooled event at the service", 120, || {
        let got: std::collections::BTreeSet<String> = arrived().into_iter().collect();
        must_arrive.is_subset(&got)
    });
    let (status, log) = d.terminate();
    assert!(status.success(), "{log}");
    assert_released(&log);
    // In order: the first arrival of each marker follows the order the kernel saw them in
    // (markers sort as they were made); duplicates (resent after a kill) are allowed.
    let mut seen = std::collections::BTreeSet::new();
    let firsts: Vec<String> = arrived()
        .into_iter()
        .filter(|m| seen.insert(m.clone()))
        .collect();
    let mut sorted = firsts.clone();
    sorted.sort();
    assert_eq!(
        firsts, sorted,
        "spooled events arrive in order across 20 crashes"
    );
}
