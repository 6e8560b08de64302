//! Operations: systemd notify and watchdog, `pauditd status`, supervision of stalled and
//! dead threads.

use crate::harness::*;

#[test]
fn systemd_hears_ready_reloading_watchdog_and_stopping() {
    let Some(_k) = kernel() else { return };
    use std::os::unix::net::UnixDatagram;
    let dir = tempdir("notify");
    let sock_path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let heard = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let listener = {
        let (heard, stop) = (heard.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(n) = sock.recv(&mut buf) {
                    heard
                        .lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&buf[..n]).into_owned());
                }
            }
        })
    };
    let said = |what: &str| {
        heard
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m.contains(what))
            .count()
    };
    let d = Daemon::start_with_env(
        &dir,
        "notify",
        &echo_rules(),
        &[
            ("NOTIFY_SOCKET", sock_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "1000000"),
        ],
    );
    wait_for("READY=1", 30, || said("READY=1") >= 1);
    // Ready means: the audit pid is ours and the rules are in the kernel.
    assert_eq!(status_field("pid"), u64::from(d.child.id()), "{}", d.log());
    assert!(auditctl(&["-l"]).contains("e2e"), "{}", d.log());
    // WatchdogSec=1s: fed every 0.5 s while the pipeline drains.
    wait_for("three watchdog pings", 10, || said("WATCHDOG=1") >= 3);
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(d.child.id() as i32, libc::SIGHUP) };
    wait_for("RELOADING=1 then READY=1", 20, || {
        said("RELOADING=1") == 1 && said("READY=1") == 2
    });
    let msgs = heard.lock().unwrap().clone();
    let reloading = msgs.iter().position(|m| m.contains("RELOADING=1")).unwrap();
    assert!(msgs[reloading].contains("MONOTONIC_USEC="), "{msgs:?}");
    assert!(
        msgs[reloading..].iter().any(|m| m.contains("READY=1")),
        "READY after RELOADING: {msgs:?}"
    );
    echo_seen_by(&d, "notify");
    let (status, log) = d.terminate();
    wait_for("STOPPING=1", 10, || said("STOPPING=1") >= 1);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    listener.join().unwrap();
    assert!(status.success(), "{log}");
    assert_released(&log);
    assert_eq!(said("STOPPING=1"), 1, "{:?}", heard.lock().unwrap());
}

#[test]
fn pauditd_status_reports_the_running_daemon_and_fails_when_it_is_gone() {
    let Some(_k) = kernel() else { return };
    let dir = tempdir("status");
    let socket = dir.join("run/status.sock");
    let cfg = format!(
        "status: {{ socket: {} }}\n{}",
        socket.display(),
        echo_rules()
    );
    let mut d = Daemon::start(&dir, "status", &cfg);
    d.wait_ready();
    echo_seen_by(&d, "status");
    let status = |json: bool| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_pauditd"));
        c.arg("status").arg("--socket").arg(&socket);
        if json {
            c.arg("--json");
        }
        c.output().unwrap()
    };
    // The snapshot is refreshed every second: wait until it shows the event.
    let mut v = Value::Null;
    wait_for("the event in the status", 20, || {
        let o = status(true);
        if !o.status.success() {
            return false;
        }
        v = serde_json::from_slice(&o.stdout).unwrap();
        v["outputs"][0]["delivered"].as_u64().unwrap_or(0) >= 1
    });
    let pid = u64::from(d.child.id());
    assert_eq!(v["pid"].as_u64(), Some(pid), "{v}");
    assert_eq!(v["kernel"]["pid"].as_u64(), Some(pid), "{v}");
    assert_eq!(v["kernel"]["enabled"].as_u64(), Some(1), "{v}");
    assert_eq!(v["rules"].as_u64(), Some(1), "{v}");
    assert!(v["rules_locked"].is_null(), "not locked: {v}");
    assert_eq!(v["outputs"][0]["name"], "file");
    assert_eq!(v["outputs"][0]["overflow"], "drop");
    assert!(v["events"]["emitted"].as_u64().unwrap() >= 1, "{v}");
    assert!(
        ["io_uring", "recv"].contains(&v["receiver"]["path"].as_str().unwrap()),
        "{v}"
    );
    let text = status(false);
    assert!(text.status.success());
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(
        text.contains(&format!("kernel: audit pid {pid}, enabled 1")),
        "{text}"
    );
    assert!(text.contains("output file (drop): delivered "), "{text}");
    // Root only.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let (st, log) = d.terminate();
    assert!(st.success(), "{log}");
    assert_released(&log);
    let gone = status(false);
    assert_eq!(gone.status.code(), Some(1));
    let err = String::from_utf8_lossy(&gone.stderr);
    assert!(err.contains("no pauditd daemon answers"), "{err}");
    // Without a daemon, the kernel's own status: nobody holds the audit pid now.
    let out = String::from_utf8_lossy(&gone.stdout);
    assert!(out.starts_with("kernel: audit pid 0 "), "{out}");
}

/// A reassembler that stops turning (failpoint `pause`, reached at a reload): the watchdog is
/// no longer fed, and supervision gives up after its stall limit: rules out, pid released,
/// exit 1 (and the stuck engine does not hold the exit up).
#[cfg(feature = "failpoints")]
#[test]
fn a_stalled_reassembler_stops_the_watchdog_and_the_daemon_exits_1() {
    let Some(_k) = kernel() else { return };
    use std::os::unix::net::UnixDatagram;
    let dir = tempdir("stall");
    let sock_path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let heard = Arc::new(Mutex::new(Vec::<(Instant, String)>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let listener = {
        let (heard, stop) = (heard.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(n) = sock.recv(&mut buf) {
                    heard.lock().unwrap().push((
                        Instant::now(),
                        String::from_utf8_lossy(&buf[..n]).into_owned(),
                    ));
                }
            }
        })
    };
    let pings_since = |t: Instant| {
        heard
            .lock()
            .unwrap()
            .iter()
            .filter(|(at, m)| *at >= t && m.contains("WATCHDOG=1"))
            .count()
    };
    let mut d = Daemon::start_with_env(
        &dir,
        "stall",
        &echo_rules(),
        &[
            ("NOTIFY_SOCKET", sock_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "2000000"),
            ("FAILPOINTS", "reassembler-new-filters=pause"),
        ],
    );
    d.wait_ready();
    let t0 = Instant::now();
    wait_for("watchdog pings", 10, || pings_since(t0) >= 2);
    // A reload stalls the reassembler as it takes the new filters.
    signal(&d, libc::SIGHUP);
    wait_for("the reload", 10, || d.log().contains("INFO: reloaded"));
    std::thread::sleep(Duration::from_secs(4));
    let quiet_from = Instant::now();
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        pings_since(quiet_from),
        0,
        "the watchdog is not fed while the reassembler is stuck: {}",
        d.log()
    );
    assert!(d.child.try_wait().unwrap().is_none(), "{}", d.log());
    let (st, log) = wait_exit(&mut d, 60);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    listener.join().unwrap();
    assert_eq!(st.code(), Some(1), "{log}");
    assert!(log.contains("the reassembler has not moved for"), "{log}");
    assert_released(&log);
    assert!(!auditctl(&["-l"]).contains("e2e"), "rules deleted");
}

/// A pipeline thread that dies (failpoint `panic` in the reassembler): supervision sees it,
/// deletes the rules, releases the pid and exits 1 so the service manager restarts us.
#[cfg(feature = "failpoints")]
#[test]
fn a_pipeline_thread_that_dies_releases_the_pid_and_exits_1() {
    let Some(_k) = kernel() else { return };
    let dir = tempdir("thread-dies");
    let mut d = Daemon::start_with_env(
        &dir,
        "thread-dies",
        &echo_rules(),
        &[("FAILPOINTS", "reassembler-hand-over=panic")],
    );
    d.wait_ready();
    echo("pauditd-thread-dies");
    let (st, log) = wait_exit(&mut d, 30);
    assert_eq!(st.code(), Some(1), "{log}");
    assert!(
        log.contains("the engine's reassembler thread stopped"),
        "{log}"
    );
    assert_released(&log);
    assert!(!auditctl(&["-l"]).contains("e2e"), "rules deleted");
}
