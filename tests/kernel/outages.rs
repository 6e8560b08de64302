//! Outages of one destination (issue 21): a reload during it, a receiver down at start,
//! stdout's reader gone, a `block` output to a dead receiver with signals and shutdown bounded.

use crate::harness::*;

/// A syslog receiver over TCP on loopback: collects every line until stopped; stopping closes
/// its connections and its port (nobody listens any more).
struct TcpReceiver {
    port: u16,
    lines: Arc<Mutex<Vec<String>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TcpReceiver {
    fn start(port: u16) -> TcpReceiver {
        use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (lines, stop) = (lines.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut conns: Vec<(std::net::TcpStream, Vec<u8>)> = Vec::new();
                let mut buf = vec![0u8; 1 << 16];
                while !stop.load(Relaxed) {
                    if let Ok((c, _)) = listener.accept() {
                        c.set_nonblocking(true).unwrap();
                        conns.push((c, Vec::new()));
                    }
                    let mut idle = true;
                    conns.retain_mut(|(c, pending)| match std::io::Read::read(c, &mut buf) {
                        Ok(0) => false,
                        Ok(n) => {
                            idle = false;
                            pending.extend_from_slice(&buf[..n]);
                            while let Some(i) = pending.iter().position(|&b| b == b'\n') {
                                let line: Vec<u8> = pending.drain(..=i).collect();
                                lines
                                    .lock()
                                    .unwrap()
                                    .push(String::from_utf8_lossy(&line).into_owned());
                            }
                            true
                        }
                        Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
                    });
                    if idle {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
            })
        };
        TcpReceiver {
            port,
            lines,
            stop,
            thread: Some(thread),
        }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Close every connection and the listening port.
    fn stop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for TcpReceiver {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Issue 21's reload-during-outage: file + syslog TCP outputs, the syslog receiver stops,
/// SIGHUP with a changed output section. The new outputs start although syslog is down (it
/// spools), and the file output gets every one of the next 50 events. A reload whose outputs
/// cannot start at all keeps the running ones. (Before: the new set could not start, nor the
/// old one again: no outputs, 0 of the 50 events in the file, nothing counted.)
#[test]
fn a_reload_during_an_outage_keeps_every_output_running() {
    let Some(_k) = kernel() else { return };
    let dir = tempdir("reload-outage");
    let mut receiver = TcpReceiver::start(free_port());
    let spool = dir.join("spool");
    let syslog = |tag: &str| {
        format!(
            "  syslog:\n    enabled: true\n    network: tcp\n    address: 127.0.0.1:{}\n    tag: {tag}\n    spool: {{ dir: {} }}\nshutdown_timeout: 3s\n{}",
            receiver.port,
            spool.display(),
            echo_rules()
        )
    };
    let mut d = Daemon::start(&dir, "reload-outage", &syslog("before"));
    d.wait_ready();
    let first = echo_seen_by(&d, "reload-outage-first");
    wait_for("the first event at the syslog receiver", 20, || {
        receiver.lines().iter().any(|l| l.contains(&first))
    });
    receiver.stop();

    // A changed `output` section while the receiver is down.
    let cfg = dir.join("reload-outage.yaml");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("tag: before", "tag: after");
    std::fs::write(&cfg, text).unwrap();
    signal(&d, libc::SIGHUP);
    wait_for("the reload", 20, || d.log().contains("INFO: reloaded"));
    let markers = echo_markers("reload-outage", 50);
    wait_for("the 50 events in the file", 30, || {
        missing_in(&markers, &d.lines().join("\n")).is_empty()
    });
    let in_file = 50 - missing_in(&markers, &d.lines().join("\n")).len();

    // A new output set that cannot start (the file's directory does not exist): the running
    // set stays, loudly.
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        &format!("path: {}", d.out.display()),
        "path: /nonexistent-pauditd-dir/out.jsonl",
    );
    std::fs::write(&cfg, text).unwrap();
    signal(&d, libc::SIGHUP);
    wait_for("the second reload", 20, || {
        d.log().matches("INFO: reloaded").count() >= 2
    });
    let more = echo_markers("reload-outage-kept", 10);
    wait_for("the 10 events in the kept file output", 30, || {
        missing_in(&more, &d.lines().join("\n")).is_empty()
    });
    let (st, log) = d.terminate();
    eprintln!("reload during an outage: {in_file} of 50 events in the file output");
    assert!(st.success(), "{log}");
    assert_released(&log);
    assert!(log.contains("THE NEW OUTPUTS CANNOT START"), "{log}");
    assert!(!log.contains("counted lost until the next reload"), "{log}");
    assert!(log.contains("output file: written="), "{log}");
    assert!(!log.contains("unaccounted"), "{log}");
}

/// A syslog output whose receiver is down at start: the daemon starts (before: exit 1), the
/// output spools and backs off, and once the receiver comes up every event arrives, in order.
#[test]
fn a_syslog_output_starts_with_its_receiver_down_and_delivers_when_it_comes_up() {
    let Some(_k) = kernel() else { return };
    let dir = tempdir("syslog-down");
    let port = free_port();
    let cfg = format!(
        "  syslog:\n    enabled: true\n    network: tcp\n    address: 127.0.0.1:{port}\n    spool: {{ dir: {} }}\n{}",
        dir.join("spool").display(),
        echo_rules()
    );
    let mut d = Daemon::start(&dir, "syslog-down", &cfg);
    d.wait_ready();
    let markers = echo_markers("syslog-down", 20);
    wait_for("the events in the file", 30, || {
        missing_in(&markers, &d.lines().join("\n")).is_empty()
    });
    let receiver = TcpReceiver::start(port);
    wait_for("every event at the receiver once it is up", 60, || {
        missing_in(&markers, &receiver.lines().join("")).is_empty()
    });
    let (st, log) = d.terminate();
    assert!(st.success(), "{log}");
    assert_released(&log);
    let got = receiver.lines();
    let order: Vec<usize> = markers
        .iter()
        .map(|m| got.iter().position(|l| l.contains(m.as_str())).unwrap())
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "in order: {order:?}");
    assert!(log.contains("output syslog: written="), "{log}");
    assert!(!log.contains("unaccounted"), "{log}");
}

/// stdout's reader goes away (EPIPE): that output ends, its events are counted lost.closed,
/// and the daemon goes on holding the audit pid with the file output complete. (Before: the
/// ended output was taken for a dead thread: pid released, exit 1.)
#[test]
fn stdout_closing_ends_that_output_and_the_daemon_goes_on() {
    let Some(_k) = kernel() else { return };
    let dir = tempdir("epipe");
    let mut d = Daemon::start_stdout(
        &dir,
        "epipe",
        "",
        &format!("  stdout: {{ enabled: true }}\n{}", echo_rules()),
        &[],
        Stdio::piped(),
    );
    d.wait_ready();
    // The reader goes away before the first event.
    drop(d.child.stdout.take());
    let markers = echo_markers("epipe", 10);
    wait_for("the events in the file", 30, || {
        missing_in(&markers, &d.lines().join("\n")).is_empty()
    });
    wait_for("stdout to end", 20, || {
        d.log().contains("the output has ended")
    });
    // Supervision looks every second: give it several looks.
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        d.child.try_wait().unwrap().is_none(),
        "still running: {}",
        d.log()
    );
    assert_eq!(status_field("pid"), u64::from(d.child.id()), "{}", d.log());
    let more = echo_markers("epipe-after", 10);
    wait_for("later events in the file", 30, || {
        missing_in(&more, &d.lines().join("\n")).is_empty()
    });
    let (st, log) = d.terminate();
    assert!(st.success(), "{log}");
    assert_released(&log);
    assert!(!log.contains("output's thread stopped"), "{log}");
    let stdout = log
        .lines()
        .rev()
        .find(|l| l.contains("output stdout: written="))
        .unwrap_or_else(|| panic!("no stdout accounting: {log}"));
    // Other processes on the machine may run /bin/echo too: compare counts, not 20.
    let field = |line: &str, name: &str| -> u64 {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} in {line}"))
    };
    assert_eq!(field(stdout, "in_flight"), 0, "{stdout}");
    assert!(field(stdout, "lost") >= 20, "{stdout}");
    assert_eq!(
        field(stdout, "written") + field(stdout, "lost"),
        field(stdout, "received"),
        "{stdout}"
    );
    assert!(
        log.contains(&format!(
            "output file: written={} lost=0",
            field(stdout, "received")
        )),
        "the file output has every event: {log}"
    );
}

/// `overflow: block` to a dead receiver: the writer waits, then the engine, then the kernel.
/// SIGUSR1 and SIGHUP are still taken at once, and SIGTERM ends within shutdown_timeout plus
/// the stated margin. (Before: SIGUSR1 blocked the main loop behind the full data queue and
/// SIGTERM never ended: killed after 31 s with shutdown_timeout 3 s.)
#[test]
fn a_block_output_to_a_dead_receiver_holds_back_neither_signals_nor_shutdown() {
    let Some(_k) = kernel() else { return };
    let dir = tempdir("block-dead");
    let port = free_port();
    let cfg = format!(
        "  syslog:\n    enabled: true\n    network: tcp\n    address: 127.0.0.1:{port}\n    overflow: block\n    queue_size: 1\nshutdown_timeout: 3s\n{}",
        load_rules(8192)
    );
    let mut d = Daemon::start(&dir, "block-dead", &cfg);
    d.wait_ready();
    let mut gen = Command::new(loadgen())
        .args(["--count", "50000"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // The pipeline fills up behind the block output: the engine stops draining.
    wait_for("the pipeline to stall behind the block output", 30, || {
        let n = d.lines().len();
        std::thread::sleep(Duration::from_millis(1000));
        n > 0 && d.lines().len() == n
    });
    let t = Instant::now();
    signal(&d, libc::SIGUSR1);
    wait_for("SIGUSR1 taken", 10, || {
        d.log().contains("SIGUSR1: outputs reopen")
    });
    let usr1 = t.elapsed();
    let t = Instant::now();
    signal(&d, libc::SIGHUP);
    wait_for("SIGHUP taken", 10, || d.log().contains("INFO: reloaded"));
    let hup = t.elapsed();
    let t = Instant::now();
    let (st, log) = d.terminate();
    let term = t.elapsed();
    let _ = gen.kill();
    let _ = gen.wait();
    eprintln!("block to a dead receiver: SIGUSR1 taken in {usr1:?}, SIGHUP in {hup:?}, SIGTERM took {term:?} (shutdown_timeout 3 s)");
    assert!(st.success(), "{log}");
    assert_released(&log);
    // shutdown_timeout (3 s) + the stated margin (3 s) + a keepalive that may be waiting
    // for its ACK (3 s): a liveness bound, not a timing measurement.
    assert!(
        term < Duration::from_secs(12),
        "SIGTERM took {term:?}: {log}"
    );
    let syslog = log
        .lines()
        .rev()
        .find(|l| l.contains("output syslog: written="))
        .unwrap_or_else(|| panic!("no syslog accounting: {log}"));
    assert!(syslog.contains("written=0"), "{syslog}");
}
