//! End-to-end tests against the real kernel: the built daemon becomes the audit daemon, loads
//! rules with auditctl, and we run commands and read the events it writes.
//!
//! They need root and auditctl. Outside CI they skip (saying so) when either is missing; with
//! `CI=true` a missing prerequisite fails. Only one process can be the audit daemon, so the
//! tests take a lock and run one at a time; a guard deletes rules, restores `enabled` and
//! checks the audit pid is released, also when a test fails.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;

static KERNEL: Mutex<()> = Mutex::new(());

fn auditctl(args: &[&str]) -> String {
    let out = Command::new("auditctl")
        .args(args)
        .output()
        .expect("auditctl");
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

fn status_field(name: &str) -> u64 {
    auditctl(&["-s"])
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!("{name} "))
                .map(|v| v.trim().parse().unwrap_or(0))
        })
        .unwrap_or(0)
}

/// Holds the lock and restores the kernel on drop, whatever happened.
struct KernelGuard {
    enabled_at_start: u64,
    backlog_limit_at_start: u64,
    _lock: MutexGuard<'static, ()>,
    /// Held (flock) while the test runs: other test processes (another checkout, another
    /// test binary) wait for it, as only one process can be the audit daemon.
    _machine_lock: std::fs::File,
}

impl Drop for KernelGuard {
    fn drop(&mut self) {
        auditctl(&["-D"]);
        if self.enabled_at_start != 2 {
            auditctl(&["-e", &self.enabled_at_start.to_string()]);
            auditctl(&["-b", &self.backlog_limit_at_start.to_string()]);
        }
    }
}

fn kernel() -> Option<KernelGuard> {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let has_auditctl = Command::new("auditctl")
        .arg("-s")
        .output()
        .is_ok_and(|o| o.status.success());
    if !(root && has_auditctl) {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "kernel tests must run in CI: root={root} auditctl={has_auditctl}"
        );
        eprintln!(
            "skipping kernel test: needs root and auditctl (root={root}, auditctl={has_auditctl})"
        );
        return None;
    }
    let lock = KERNEL.lock().unwrap_or_else(|e| e.into_inner());
    let machine_lock = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open("/tmp/pauditd-kernel-tests.lock")
        .expect("open the machine-wide kernel test lock");
    // SAFETY: flock on a file descriptor we own; it blocks until the lock is ours.
    let rc = unsafe {
        libc::flock(
            std::os::unix::io::AsRawFd::as_raw_fd(&machine_lock),
            libc::LOCK_EX,
        )
    };
    assert_eq!(rc, 0, "flock the kernel test lock");
    let pid = status_field("pid");
    assert!(
        pid == 0 || !Path::new(&format!("/proc/{pid}")).exists(),
        "another process ({pid}) is the audit daemon; stop it before the kernel tests"
    );
    Some(KernelGuard {
        enabled_at_start: status_field("enabled"),
        backlog_limit_at_start: status_field("backlog_limit"),
        _lock: lock,
        _machine_lock: machine_lock,
    })
}

struct Daemon {
    child: Child,
    stderr: Arc<Mutex<String>>,
    out: PathBuf,
}

impl Daemon {
    fn start(dir: &Path, name: &str, extra_config: &str) -> Daemon {
        Daemon::start_with_env(dir, name, extra_config, &[])
    }

    fn start_with_env(dir: &Path, name: &str, extra_config: &str, env: &[(&str, &str)]) -> Daemon {
        Daemon::start_full(dir, name, "", extra_config, env)
    }

    /// `file_options`: more keys of the file output (`format: enriched`).
    fn start_full(
        dir: &Path,
        name: &str,
        file_options: &str,
        extra_config: &str,
        env: &[(&str, &str)],
    ) -> Daemon {
        Daemon::start_stdout(dir, name, file_options, extra_config, env, Stdio::null())
    }

    /// As [`start_full`](Self::start_full) with the daemon's stdout going to `stdout`.
    fn start_stdout(
        dir: &Path,
        name: &str,
        file_options: &str,
        extra_config: &str,
        env: &[(&str, &str)],
        stdout: Stdio,
    ) -> Daemon {
        let out = dir.join(format!("{name}.jsonl"));
        let cfg = dir.join(format!("{name}.yaml"));
        std::fs::write(
            &cfg,
            format!(
                "socket_buffer: {{ receive: 8388608 }}\noutput:\n  file: {{ enabled: true, path: {}{file_options} }}\n{extra_config}",
                out.display()
            ),
        )
        .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_pauditd"))
            .arg("-config")
            .arg(&cfg)
            .env("PAUDITD_LOG", "info")
            .envs(env.iter().copied())
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        Daemon { child, stderr, out }
    }

    fn log(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Wait until the daemon says it is processing (or exits).
    fn wait_ready(&mut self) {
        wait_for("daemon start", 30, || {
            if let Some(st) = self.child.try_wait().unwrap() {
                panic!("daemon exited early ({st}): {}", self.log());
            }
            let l = self.log();
            l.contains("Started processing events")
        });
    }

    fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn terminate(mut self) -> (std::process::ExitStatus, String) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(50)); // let the stderr reader finish
                return (st, self.log());
            }
            assert!(
                Instant::now() < deadline,
                "daemon did not exit after SIGTERM: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn wait_for(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pauditd-kernel-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn echo_exe() -> String {
    std::fs::canonicalize("/bin/echo")
        .unwrap()
        .display()
        .to_string()
}

/// Run /bin/echo (audited by [`echo_rules`]) with `arg`.
fn echo(arg: &str) {
    assert!(Command::new("/bin/echo")
        .arg(arg)
        .stdout(Stdio::null())
        .status()
        .unwrap()
        .success());
}

/// Rules auditing exec of /bin/echo under the key `e2e`, and enabling auditing.
/// Run /bin/echo with a marker naming `tag` and wait until `d` wrote its event; returns the
/// marker.
fn echo_seen_by(d: &Daemon, tag: &str) -> String {
    let marker = format!("pauditd-{tag}-{}", std::process::id());
    echo(&marker);
    wait_for("the echo event", 20, || {
        d.lines().iter().any(|l| l.contains(&marker))
    });
    marker
}

fn echo_rules() -> String {
    format!(
        "rules:\n  - -a exit,always -F arch=b64 -S execve -F exe={} -k e2e\n  - -e 1\n",
        echo_exe()
    )
}

fn loadgen() -> String {
    std::fs::canonicalize(env!("CARGO_BIN_EXE_pauditd-loadgen"))
        .unwrap()
        .display()
        .to_string()
}

fn parse(line: &str) -> Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

fn types(ev: &Value) -> Vec<u64> {
    ev["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["type"].as_u64().unwrap())
        .collect()
}

fn assert_released(log: &str) {
    let pid = status_field("pid");
    assert!(
        pid == 0 || !Path::new(&format!("/proc/{pid}")).exists(),
        "audit pid {pid} still held; log:\n{log}"
    );
}

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

fn load_rules(backlog: u32) -> String {
    format!(
        "rules:\n  - -b {backlog}\n  - -a exit,always -F arch=b64 -S getppid -F exe={} -k load\n  - -e 1\n",
        loadgen()
    )
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
fn sighup_reloads_filters_and_sigusr1_reopens_the_file() {
    let Some(_k) = kernel() else { return };
    let dir = tempdir("hup");
    let rules = echo_rules();
    let mut d = Daemon::start(&dir, "hup", &rules);
    d.wait_ready();
    echo("before-hup-keep");
    wait_for("first event", 20, || {
        d.lines().iter().any(|l| l.contains("before-hup-keep"))
    });

    // Same config plus a key filter that drops events mentioning "drop-me".
    let cfg = dir.join("hup.yaml");
    let text =
        std::fs::read_to_string(&cfg).unwrap() + "filters:\n  - { key: e2e, regex: drop-me }\n";
    std::fs::write(&cfg, text).unwrap();
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(d.child.id() as i32, libc::SIGHUP) };
    wait_for("reload", 20, || d.log().contains("reloaded"));
    echo("after-hup-drop-me");
    echo("after-hup-keep");
    wait_for("kept event", 20, || {
        d.lines().iter().any(|l| l.contains("after-hup-keep"))
    });

    // logrotate: move the file, SIGUSR1, the next event goes to a fresh file.
    let rotated = dir.join("hup.jsonl.1");
    std::fs::rename(&d.out, &rotated).unwrap();
    // SAFETY: as above.
    unsafe { libc::kill(d.child.id() as i32, libc::SIGUSR1) };
    wait_for("the file to be reopened", 20, || {
        d.log().contains("file: reopened")
    });
    echo("after-usr1");
    wait_for("event in the new file", 20, || {
        d.lines().iter().any(|l| l.contains("after-usr1"))
    });
    let (st, log) = d.terminate();
    assert!(st.success(), "{log}");
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert!(old.contains("before-hup-keep") && old.contains("after-hup-keep"));
    assert!(
        !old.contains("drop-me") && !d_lines(&dir).contains("drop-me"),
        "filtered after reload"
    );
    assert!(!old.contains("after-usr1"));
    assert!(log.contains("events_filtered=1"), "{log}");
}

fn d_lines(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("hup.jsonl")).unwrap_or_default()
}

#[test]
fn a_bad_rule_stops_start_up_with_its_number() {
    let Some(_k) = kernel() else { return };
    let dir = tempdir("badrule");
    let cfg = dir.join("bad.yaml");
    std::fs::write(
        &cfg,
        "output: { stdout: { enabled: true } }\nrules:\n  - -a exit,always -F arch=b64 -S execve -k fine\n  - -a never,nowhere -S not_a_syscall\n",
    )
    .unwrap();
    // A rule the native loader cannot parse is a config error (EX_CONFIG).
    let err = start_fails_with(&cfg, 78);
    assert!(
        err.contains("rules: rule #2: -a never,nowhere -S not_a_syscall: -a/-A \"never,nowhere\": expected list,action"),
        "{err}"
    );
    assert!(
        err.lines().last().unwrap().starts_with("pauditd: "),
        "one-line error last: {err}"
    );
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

#[path = "../sinks/tests/support/httpd.rs"]
mod httpd;

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

/// Run the daemon on `cfg`, expecting start-up to fail: exit 1 (78 when the config itself is
/// refused), and the audit pid let go. Returns what it printed.
fn start_fails(cfg: &Path) -> String {
    start_fails_with(cfg, 1)
}

fn start_fails_with(cfg: &Path, code: i32) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_pauditd"))
        .arg("-config")
        .arg(cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(code), "{err}");
    assert_released(&err);
    err
}

/// `CapEff` of one task's status file.
fn cap_eff(status: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
        .expect("CapEff line")
}

#[test]
fn dropped_to_nobody_the_daemon_keeps_only_audit_control_and_still_works() {
    let Some(_k) = kernel() else { return };
    let dir = tempdir("privdrop");
    // An HTTP output nobody answers: its events go to a spool the dropped user must own.
    let port = free_port();
    // The packaged layout: the spool under a root-only (0700) state directory, which the
    // dropped user cannot even traverse.
    let state = dir.join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let spool = state.join("spool");
    let config = |queue: u32| {
        format!(
            "  http: {{ enabled: true, url: 'http://127.0.0.1:{port}/', queue_size: {queue}, spool: {{ dir: {} }} }}\nstatus: {{ socket: {}/run/status.sock }}\n",
            spool.display(),
            dir.display()
        ) + &echo_rules()
            + "privileges: { user: nobody }\n"
    };
    // Debug logging: the keepalive's status line shows when one has run.
    // The file output's file belongs to nobody, so a reload (as nobody) can open it again.
    let out = dir.join("privdrop.jsonl");
    std::fs::write(&out, b"").unwrap();
    std::os::unix::fs::chown(&out, Some(65534), Some(65534)).unwrap();
    let mut d = Daemon::start_with_env(&dir, "privdrop", &config(64), &[("PAUDITD_LOG", "debug")]);
    d.wait_ready();
    let pid = d.child.id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uids = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert_eq!(
        uids.split_whitespace().collect::<Vec<_>>(),
        ["Uid:", "65534", "65534", "65534", "65534"],
        "{}",
        d.log()
    );
    const AUDIT_CONTROL: u64 = 1 << 30;
    assert_eq!(cap_eff(&status), AUDIT_CONTROL, "main thread: {status}");
    let mut others = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let task = task.unwrap();
        if task.file_name().to_string_lossy() == pid.to_string() {
            continue;
        }
        let st = std::fs::read_to_string(task.path().join("status")).unwrap();
        assert_eq!(
            cap_eff(&st),
            0,
            "thread {:?} kept capabilities",
            task.file_name()
        );
        others += 1;
    }
    assert!(others >= 3, "receiver, reassembler, writer: {others}");
    // Past one keepalive (AUDIT_SET every 5 s, needs CAP_AUDIT_CONTROL on the main thread):
    // its status line is logged right after it.
    wait_for("a keepalive", 20, || d.log().contains("kernel backlog="));
    let marker = echo_seen_by(&d, "privdrop");
    // The HTTP output, running as nobody, spooled the event into its own directory.
    let segs = || -> Vec<PathBuf> {
        std::fs::read_dir(&spool)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "seg"))
            .collect()
    };
    wait_for("the event in nobody's spool", 30, || {
        segs()
            .iter()
            .any(|p| String::from_utf8_lossy(&std::fs::read(p).unwrap()).contains(&marker))
    });
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&spool).unwrap().uid(), 65534);
    // The status socket was bound before the drop and still answers.
    let st = Command::new(env!("CARGO_BIN_EXE_pauditd"))
        .args(["status", "--socket"])
        .arg(dir.join("run/status.sock"))
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    // Root's and private (issue #22); its directory, which the daemon made, is nobody's so
    // the socket can be removed at exit.
    let sock = std::fs::symlink_metadata(dir.join("run/status.sock")).unwrap();
    assert_eq!((sock.uid(), sock.mode() & 0o7777), (0, 0o600));
    assert_eq!(std::fs::metadata(dir.join("run")).unwrap().uid(), 65534);
    let owners: Vec<(PathBuf, u32)> = segs()
        .into_iter()
        .map(|p| {
            let uid = std::fs::metadata(&p).unwrap().uid();
            (p, uid)
        })
        .collect();
    assert!(
        owners.iter().all(|(_, uid)| *uid == 65534),
        "{owners:?}\n{}",
        d.log()
    );
    // A reload that rebuilds the output, now as nobody: it takes the spool over from the
    // directory opened at start and keeps spooling.
    std::fs::write(
        dir.join("privdrop.yaml"),
        format!(
            "socket_buffer: {{ receive: 8388608 }}\noutput:\n  file: {{ enabled: true, path: {} }}\n{}",
            d.out.display(),
            config(32)
        ),
    )
    .unwrap();
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(d.child.id() as i32, libc::SIGHUP) };
    wait_for("the reload", 20, || d.log().contains("reloaded"));
    let again = format!("pauditd-privdrop-reloaded-{}", std::process::id());
    echo(&again);
    let start = Instant::now();
    while !d.lines().iter().any(|l| l.contains(&again)) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the echo after the reload never reached the file output: {}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(25));
    }
    let start = Instant::now();
    while !segs()
        .iter()
        .any(|p| String::from_utf8_lossy(&std::fs::read(p).unwrap()).contains(&again))
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the event after the reload never reached nobody's spool: {}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(25));
    }
    let (st, log) = d.terminate();
    assert!(st.success(), "{log}");
    assert!(!log.contains("running without a spool"), "{log}");
    assert!(log.contains("Running as nobody (uid 65534"), "{log}");
    assert!(
        !log.lines()
            .any(|l| l.contains("ERROR") && !l.contains("http")),
        "{log}"
    );
    assert!(
        std::fs::symlink_metadata(dir.join("run/status.sock")).is_err(),
        "the status socket is removed at exit after the privilege drop: {log}"
    );
    assert_released(&log);
    // auditctl -D at shutdown ran with the ambient capability.
    assert!(auditctl(&["-l"]).contains("No rules"), "{log}");
}

#[test]
fn an_unknown_user_stops_start_up_before_the_kernel_is_touched() {
    let Some(_k) = kernel() else { return };
    let dir = tempdir("privbad");
    let mut d = Daemon::start(
        &dir,
        "privbad",
        &(echo_rules() + "privileges: { user: no-such-user-pauditd }\n"),
    );
    let st = d.child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let log = d.log();
    // A config the daemon refuses: EX_CONFIG, which the unit does not restart.
    assert_eq!(st.code(), Some(78), "{log}");
    assert!(
        log.contains("unknown user \"no-such-user-pauditd\""),
        "{log}"
    );
    assert_eq!(status_field("pid"), 0, "{log}");
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

#[test]
fn sighup_during_a_burst_loses_and_duplicates_nothing() {
    let Some(_k) = kernel() else { return };
    let dir = tempdir("hupburst");
    let mut d = Daemon::start(&dir, "hupburst", &load_rules(8192));
    d.wait_ready();
    let lost_before = status_field("lost");
    const N: usize = 150_000;
    let mut gen = Command::new(loadgen())
        .args(["--count", &N.to_string()])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let count = |d: &Daemon| {
        d.lines()
            .iter()
            .filter(|l| l.contains("\"rule_key\":\"load\""))
            .count()
    };
    let mut hups = 0;
    while gen.try_wait().unwrap().is_none() {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(d.child.id() as i32, libc::SIGHUP) };
        hups += 1;
        std::thread::sleep(Duration::from_millis(150));
    }
    assert!(gen.wait().unwrap().success());
    wait_for("every load event", 120, || count(&d) >= N);
    std::thread::sleep(Duration::from_millis(300));
    let lost_after = status_field("lost");
    let lines = d.lines();
    let (st, log) = d.terminate();
    assert!(st.success(), "{log}");
    assert!(hups >= 2, "the burst outlived several reloads ({hups})");
    assert!(log.matches("INFO: reloaded ").count() >= 2, "{log}");
    assert!(!log.contains("reload failed"), "{log}");
    let mut serials: Vec<u64> = lines
        .iter()
        .filter(|l| l.contains("\"rule_key\":\"load\""))
        .map(|l| parse(l)["sequence"].as_u64().unwrap())
        .collect();
    assert_eq!(serials.len(), N, "each event written once");
    serials.sort_unstable();
    serials.dedup();
    assert_eq!(serials.len(), N, "no duplicates");
    assert_eq!(lost_after, lost_before, "kernel lost records");
    assert!(log.contains("in_flight=0"), "{log}");
    assert!(!log.contains("unaccounted"), "{log}");
}

/// How the syslog receiver of [`outputs_stay_isolated`] misbehaves.
#[derive(Clone, Copy, Debug)]
enum BadReceiver {
    /// Reads for 1.5 s, then closes the connection and stops listening.
    ReadsThenCloses,
    /// Accepts and never reads.
    NeverReads,
}

/// The issue's scenario: a file output beside a syslog output whose receiver dies, under
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

#[test]
fn spooled_events_survive_kill_9_and_arrive_after_restart() {
    let Some(_k) = kernel() else { return };
    let dir = tempdir("kill9");
    // Nobody listens on this port yet: every event goes to the spool.
    let port = free_port();
    let spool = dir.join("spool");
    let cfg = format!(
        "  http:\n    enabled: true\n    url: http://127.0.0.1:{port}/audit\n    worker_count: 1\n    spool: {{ dir: {} }}\n{}",
        spool.display(),
        echo_rules()
    );
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
    let _ = d.child.kill();
    let _ = d.child.wait();
    drop(d);
    auditctl(&["-D"]);
    wait_for("the kernel to let go of the dead daemon", 30, || {
        let pid = status_field("pid");
        pid == 0 || !Path::new(&format!("/proc/{pid}")).exists()
    });

    let server = httpd::Server::plain_at(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    let mut d = Daemon::start(&dir, "kill9-again", &cfg);
    d.wait_ready();
    let arrived = |server: &httpd::Server| -> Vec<String> {
        server
            .requests()
            .iter()
            .map(|r| String::from_utf8_lossy(&r.body).into_owned())
            .collect()
    };
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
    let cfg = format!(
        "  http:\n    enabled: true\n    url: http://127.0.0.1:{port}/audit\n    worker_count: 1\n    spool: {{ dir: {}, write_ahead: true }}\n{}",
        spool.display(),
        echo_rules()
    );
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
    let _ = d.child.kill();
    let _ = d.child.wait();
    drop(d);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    acceptor.join().unwrap();
    held.lock().unwrap().clear();
    auditctl(&["-D"]);
    wait_for("the kernel to let go of the dead daemon", 30, || {
        let pid = status_field("pid");
        pid == 0 || !Path::new(&format!("/proc/{pid}")).exists()
    });
    let server = httpd::Server::plain_at(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    let mut d = Daemon::start(&dir, "writeahead-again", &cfg);
    d.wait_ready();
    wait_for("every event at the working destination", 60, || {
        let got: Vec<String> = server
            .requests()
            .iter()
            .map(|r| String::from_utf8_lossy(&r.body).into_owned())
            .collect();
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
    let cfg = format!(
        "  http:\n    enabled: true\n    url: http://127.0.0.1:{port}/audit\n    worker_count: 1\n    spool: {{ dir: {} }}\n{}",
        spool.display(),
        echo_rules()
    );
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
        let _ = d.child.kill();
        let _ = d.child.wait();
        drop(d);
        auditctl(&["-D"]);
        wait_for("the kernel to let go of the dead daemon", 30, || {
            let pid = status_field("pid");
            pid == 0 || !Path::new(&format!("/proc/{pid}")).exists()
        });
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

/// `GET path` on `addr` over plain HTTP/1.1; the body.
fn http_get(addr: &str, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let (head, body) = resp.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn a_real_prometheus_scrapes_the_daemon_and_reads_its_counts() {
    let Some(_k) = kernel() else { return };
    let Ok(prom_bin) = which("prometheus") else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "the Prometheus test must run in CI (apt-get install prometheus)"
        );
        eprintln!("skipping: no prometheus binary (apt-get install prometheus)");
        return;
    };
    let dir = tempdir("prometheus");
    let (ours, theirs) = (free_port(), free_port());
    let cfg = format!(
        "metrics: {{ prometheus: {{ enabled: true, address: '127.0.0.1:{ours}' }} }}\n{}",
        echo_rules()
    );
    let mut d = Daemon::start(&dir, "prom", &cfg);
    d.wait_ready();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global: {{ scrape_interval: 1s, evaluation_interval: 1s }}\nscrape_configs:\n  - job_name: pauditd\n    static_configs:\n      - targets: ['127.0.0.1:{ours}']\n"
        ),
    )
    .unwrap();
    struct Kill(Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _prom = Kill(
        Command::new(prom_bin)
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{theirs}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let papi = format!("127.0.0.1:{theirs}");
    let query = |q: &str| -> Option<f64> {
        let body = http_get(&papi, &format!("/api/v1/query?query={q}"))?;
        let v: Value = serde_json::from_str(&body).ok()?;
        v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    };
    wait_for("Prometheus to see the target up", 60, || {
        query("up%7Bjob%3D%22pauditd%22%7D") == Some(1.0)
    });
    for i in 0..5 {
        echo(&format!("pauditd-prom-{i}"));
    }
    wait_for("five events in the file", 20, || {
        d.lines()
            .iter()
            .filter(|l| l.contains("pauditd-prom-"))
            .count()
            == 5
    });
    // The daemon's own count, from its /metrics, once it settles.
    let ours_now = || -> Option<f64> {
        let body = http_get(&format!("127.0.0.1:{ours}"), "/metrics")?;
        body.lines()
            .find_map(|l| l.strip_prefix("pauditd_output_events_delivered_total{output=\"file\"} "))
            .and_then(|v| v.parse().ok())
    };
    // Other in-range records (the rule load's CONFIG_CHANGE) may still be arriving: compare
    // fresh readings until they agree.
    let mut written = 0.0;
    wait_for("the daemon's counter to match the file's lines", 20, || {
        let lines = d.lines().len() as f64;
        written = lines;
        ours_now() == Some(lines)
    });
    let q = "pauditd_output_events_delivered_total%7Boutput%3D%22file%22%7D";
    wait_for("Prometheus to read the daemon's count", 30, || {
        let theirs = query(q);
        theirs.is_some() && theirs == ours_now()
    });
    assert!(written >= 5.0);
    // By the book: HELP and TYPE for every family; the kernel's cumulative `lost` a counter;
    // loss reasons as labels; build and process figures.
    let body = http_get(&format!("127.0.0.1:{ours}"), "/metrics").unwrap();
    assert_eq!(
        body.matches("# HELP ").count(),
        body.matches("# TYPE ").count(),
        "{body}"
    );
    for want in [
        "# TYPE pauditd_kernel_lost_total counter\npauditd_kernel_lost_total ",
        "pauditd_output_events_lost_total{output=\"file\",reason=\"queue_full\"} 0\n",
        "pauditd_build_info{version=\"",
        "# TYPE process_resident_memory_bytes gauge\n",
        "# TYPE process_cpu_seconds_total counter\n",
        "# TYPE pauditd_batch_write_duration_seconds histogram\n",
    ] {
        assert!(body.contains(want), "{want} not in\n{body}");
    }
    // Prometheus read the labelled counter too.
    assert_eq!(
        query(
            "pauditd_output_events_lost_total%7Boutput%3D%22file%22%2Creason%3D%22queue_full%22%7D"
        ),
        Some(0.0)
    );
    let (st, log) = d.terminate();
    assert!(st.success(), "{log}");
    assert_released(&log);
}

fn which(name: &str) -> Result<PathBuf, ()> {
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(name))
                .find(|f| f.is_file())
        })
        .ok_or(())
}

#[test]
fn a_failed_rule_reload_leaves_the_previous_rules_in_force_and_says_so() {
    let Some(_k) = kernel() else { return };
    let dir = tempdir("badreload");
    let mut d = Daemon::start(&dir, "badreload", &echo_rules());
    d.wait_ready();
    let before = auditctl(&["-l"]);
    assert!(before.contains("key=e2e"), "{before}");
    // A new list whose first rule is fine and whose second the kernel refuses (ENOENT): the
    // first is added, then the second fails, and the first must go again.
    let cfg = dir.join("badreload.yaml");
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "rules:\n",
        "metrics: { enabled: true, address: '127.0.0.1:9' }\nrules:\n  - -a exit,always -F arch=b64 -S getppid -k half-applied\n  - -a exit,always -F arch=b64 -S execve -F exe=/no/such/pauditd-exe\n",
    );
    std::fs::write(&cfg, text).unwrap();
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(d.child.id() as i32, libc::SIGHUP) };
    wait_for("the reload to fail", 20, || {
        d.log().contains("reload failed")
    });
    let after = auditctl(&["-l"]);
    assert_eq!(after, before, "the previous rules, exactly");
    let log = d.log();
    assert!(
        log.contains("failed to add rule #2: -a exit,always -F arch=b64 -S execve -F exe=/no/such/pauditd-exe: a path it names (exe=, dir=) does not exist (ENOENT); the previous rules were restored"),
        "{log}"
    );
    // Still working on the old rules.
    echo_seen_by(&d, "badreload");
    let (st, log) = d.terminate();
    assert!(st.success(), "{log}");
    assert_released(&log);
}

#[test]
fn sighup_says_which_changed_sections_need_a_restart() {
    let Some(_k) = kernel() else { return };
    let dir = tempdir("hupsections");
    let mut d = Daemon::start(&dir, "hupsections", &echo_rules());
    d.wait_ready();
    let cfg = dir.join("hupsections.yaml");
    let text = std::fs::read_to_string(&cfg).unwrap()
        + "engine: { ring_size: 1048576 }\nevents: { timeout: 3s }\n";
    std::fs::write(&cfg, text).unwrap();
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(d.child.id() as i32, libc::SIGHUP) };
    wait_for("the reload", 20, || d.log().contains("reloaded "));
    let log = d.log();
    assert!(
        log.contains("`engine` changed; it takes effect at the next restart"),
        "{log}"
    );
    assert!(
        log.contains("`events` changed; it takes effect at the next restart"),
        "{log}"
    );
    assert!(!log.contains("`metrics` changed"), "{log}");
    let (st, log) = d.terminate();
    assert!(st.success(), "{log}");
    assert_released(&log);
}

/// The kernel's listing of every rule, parsed.
fn kernel_rules(
    sock: &pauditd_engine::netlink::AuditSocket,
) -> Vec<pauditd_engine::auditrule::RuleData> {
    sock.list_rules(Duration::from_secs(3))
        .unwrap()
        .iter()
        .map(|b| pauditd_engine::auditrule::RuleData::from_bytes(b).unwrap())
        .collect()
}

/// For each rule: load it with auditctl and compare the kernel's copy with our encoding; then
/// load our encoding over netlink instead and compare `auditctl -l`. Returns (matched,
/// refused by auditctl here, not supported by us yet).
fn compare_with_auditctl(rules: &[String]) -> (usize, usize, Vec<String>) {
    use pauditd_engine::auditrule::{self, AUDIT_ADD_RULE};
    use pauditd_engine::netlink::{AuditSocket, Mode};
    let sock = AuditSocket::open(Mode::Unicast).unwrap();
    let (mut matched, mut refused, mut unsupported) = (0, 0, Vec::new());
    for r in rules {
        let args: Vec<&str> = r.split_whitespace().collect();
        auditctl(&["-D"]);
        let out = Command::new("auditctl").args(&args).output().unwrap();
        if !out.status.success() {
            refused += 1; // e.g. a path or an arch this machine does not have
            continue;
        }
        let theirs = kernel_rules(&sock);
        let ours = match auditrule::parse(&args) {
            Ok(o) => o,
            Err(e) => {
                unsupported.push(format!("{r}: {e}"));
                continue;
            }
        };
        assert_eq!(
            theirs.len(),
            1,
            "{r}: auditctl loaded {} rules",
            theirs.len()
        );
        assert_eq!(
            theirs[0],
            ours.as_listed(),
            "{r}: our encoding differs from auditctl's"
        );
        let listed = auditctl(&["-l"]);
        auditctl(&["-D"]);
        sock.change_rule(AUDIT_ADD_RULE, &ours.to_bytes(), Duration::from_secs(3))
            .unwrap_or_else(|e| panic!("{r}: the kernel refused our rule: {e}"));
        assert_eq!(auditctl(&["-l"]), listed, "{r}: listed differently");
        matched += 1;
    }
    auditctl(&["-D"]);
    (matched, refused, unsupported)
}

#[test]
fn native_rule_encoding_is_what_auditctl_loads_for_our_own_rules() {
    let Some(_k) = kernel() else { return };
    let rules: Vec<String> = [
        "-a always,exit -F arch=b64 -S execve -k exec",
        "-a exit,always -F arch=b32 -S open,openat -F exit=-EACCES -k access",
        "-w /etc/passwd -p wa -k identity",
        "-w /etc/sudoers.d/ -p wa -k scope",
        "-a always,exit -F arch=b64 -S all -F auid>=1000 -F auid!=unset -F success=0",
        "-a never,exclude -F msgtype=CWD",
        "-A always,exit -F arch=b64 -S getppid -F pid=1 -F uid=root -F gid=0 -k k1 -k k2",
        "-a always,exit -F arch=b64 -S chmod -F perm=x -F filetype=file -F dir=/tmp",
        "-a always,exit -F arch=b64 -S connect -F a0=2 -F saddr_fam=10",
        "-a always,exit -F exe=/usr/bin/id -F arch=b64 -S execve",
        "-a always,exit -F arch=b64 -S openat -F a2&0100 -F success=1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (matched, refused, unsupported) = compare_with_auditctl(&rules);
    assert_eq!(refused, 0);
    assert!(unsupported.is_empty(), "{unsupported:#?}");
    assert_eq!(matched, rules.len());
}

#[test]
fn native_rule_encoding_matches_auditctl_over_audit_userspaces_rule_files() {
    let Some(_k) = kernel() else { return };
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/rules/audit-userspace");
    let Ok(files) = std::fs::read_dir(&dir) else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "the shared rule files must be at {} in CI",
            dir.display()
        );
        eprintln!("skipping: no shared rule files at {}", dir.display());
        return;
    };
    let mut rules = Vec::new();
    for f in files.flatten() {
        if f.path().extension().map_or(true, |x| x != "rules") {
            continue;
        }
        for line in std::fs::read_to_string(f.path()).unwrap().lines() {
            let l = line.trim();
            // Rules only: control options (-D -b -f -e -i -c --backlog_wait_time ...) are not
            // rules the kernel lists.
            if l.starts_with("-a") || l.starts_with("-A") || l.starts_with("-w") {
                rules.push(l.to_string());
            }
        }
    }
    let (matched, refused, unsupported) = compare_with_auditctl(&rules);
    eprintln!(
        "{} rules: {matched} identical to auditctl's, {refused} refused by auditctl on this machine, {} not supported natively yet:\n{}",
        rules.len(),
        unsupported.len(),
        unsupported.join("\n")
    );
    assert!(
        matched >= rules.len() * 3 / 4,
        "{matched} of {}",
        rules.len()
    );
}

#[test]
fn the_native_rule_loader_loads_what_auditctl_would_and_cleans_up() {
    let Some(_k) = kernel() else { return };
    let dir = tempdir("native");
    // The same rule through auditctl, for the listing to compare with.
    let echo = echo_exe();
    auditctl(&["-D"]);
    let exe = format!("exe={echo}");
    auditctl(&[
        "-a",
        "exit,always",
        "-F",
        "arch=b64",
        "-S",
        "execve",
        "-F",
        &exe,
        "-k",
        "e2e",
    ]);
    let expected = auditctl(&["-l"]);
    auditctl(&["-D"]);
    let rules = format!(
        "rules_loader: native\nrules:\n  - -D\n  - -b 8192\n  - -a exit,always -F arch=b64 -S execve -F exe={echo} -k e2e\n  - -e 1\n"
    );
    let mut d = Daemon::start(&dir, "native", &rules);
    d.wait_ready();
    assert_eq!(status_field("backlog_limit"), 8192, "{}", d.log());
    assert_eq!(auditctl(&["-l"]), expected);
    echo_seen_by(&d, "native");
    let (st, log) = d.terminate();
    assert!(st.success(), "{log}");
    assert_released(&log);
    assert!(
        auditctl(&["-l"]).contains("No rules"),
        "deleted at shutdown: {log}"
    );

    // A rule the kernel refuses: start-up stops naming it and the reason.
    let cfg = dir.join("bad.yaml");
    std::fs::write(
        &cfg,
        "rules_loader: native\noutput: { stdout: { enabled: true } }\nrules:\n  - -a exit,always -F arch=b64 -S execve -k fine\n  - -a exit,always -F arch=b64 -S execve -k fine\n",
    )
    .unwrap();
    // Found by the plan before the kernel is touched: a config error (EX_CONFIG).
    let err = start_fails_with(&cfg, 78);
    assert!(
        err.contains("rule #2: -a exit,always -F arch=b64 -S execve -k fine: the same rule as rule #1 (the kernel refuses a duplicate: EEXIST)"),
        "{err}"
    );
    assert!(auditctl(&["-l"]).contains("No rules"), "{err}");

    // One the kernel refuses (a watch on a path that does not exist has no ENOENT, an exe=
    // does): named with the kernel's reason, and nothing is left behind.
    std::fs::write(
        &cfg,
        "output: { stdout: { enabled: true } }\nrules:\n  - -a exit,always -F arch=b64 -S execve -k fine\n  - -a exit,always -F arch=b64 -S execve -F exe=/no/such/pauditd-exe -k missing\n",
    )
    .unwrap();
    let err = start_fails(&cfg);
    assert!(
        err.contains("failed to add rule #2: -a exit,always -F arch=b64 -S execve -F exe=/no/such/pauditd-exe -k missing: a path it names (exe=, dir=) does not exist (ENOENT); the previous rules were restored"),
        "{err}"
    );
    assert!(auditctl(&["-l"]).contains("No rules"), "{err}");
}

/// The daemon on a widely used public rule set that starts with `-i` (issue 23: it used to
/// refuse the whole config and start with no rule): it starts, the kernel lists exactly what
/// `auditctl -R` loads from the same file, the skipped lines are logged and counted, and
/// SIGTERM removes every rule.
#[test]
fn the_daemon_loads_a_public_rule_set_with_i_as_auditctl_r_does() {
    let Some(_k) = kernel() else { return };
    let settings = kernel_settings();
    let dir = tempdir("publicdaemon");
    let file =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/rules/neo23x0-audit.rules");
    auditctl(&["-D"]);
    let out = Command::new("auditctl")
        .arg("-R")
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success());
    let theirs = auditctl(&["-l"]);
    let skipped_by_auditctl = String::from_utf8_lossy(&out.stderr)
        .matches("There was an error in line ")
        .count();
    auditctl(&["-D"]);
    restore_settings(&settings);
    let cfg = format!("rules_files: ['{}']\n", file.display());
    let mut d = Daemon::start(&dir, "publicdaemon", &cfg);
    d.wait_ready();
    assert_eq!(auditctl(&["-l"]), theirs, "{}", d.log());
    let log = d.log();
    assert!(
        log.contains(&format!(
            "{skipped_by_auditctl} rule line(s) skipped after -c/-i, as auditctl -R would"
        )),
        "{log}"
    );
    assert!(
        log.contains("neo23x0-audit.rules:718: -a always,exit -F arch=b32 -S connect -F dir=+ -F obj=/opt/CrowdStrike/falcon-sensor -F key=crowdstrike_network: -F \"obj\": unknown field; skipped (-c/-i)"),
        "{log}"
    );
    let (st, log) = d.terminate();
    assert!(st.success(), "{log}");
    assert_released(&log);
    assert!(auditctl(&["-l"]).contains("No rules"), "{log}");
    restore_settings(&settings);
}

/// A rule the kernel refuses at start (an `exe=` that does not exist) after `-D` and a rule
/// that loads: start-up fails naming it, and the kernel's rules are exactly as found, a rule
/// another process had loaded included (the start-failure path used to delete every rule).
#[test]
fn a_rule_the_kernel_refuses_at_start_leaves_the_kernels_rules_exactly_as_found() {
    let Some(_k) = kernel() else { return };
    let dir = tempdir("foreign");
    auditctl(&["-D"]);
    let out = auditctl(&[
        "-a",
        "always,exit",
        "-F",
        "arch=b64",
        "-S",
        "getppid",
        "-k",
        "foreign-pauditd",
    ]);
    assert!(out.trim().is_empty(), "{out}");
    auditctl(&["-w", "/etc/hostname", "-p", "wa", "-k", "foreign-watch"]);
    let before = auditctl(&["-l"]);
    assert_eq!(before.lines().count(), 2, "{before}");
    let cfg = dir.join("refused.yaml");
    std::fs::write(
        &cfg,
        "output: { stdout: { enabled: true } }\nrules:\n  - -D\n  - -a exit,always -F arch=b64 -S execve -k fine\n  - -a exit,always -F arch=b64 -S execve -F exe=/no/such/pauditd-exe -k missing\n  - -e 1\n",
    )
    .unwrap();
    let err = start_fails(&cfg);
    assert!(
        err.contains("failed to add rule #3: -a exit,always -F arch=b64 -S execve -F exe=/no/such/pauditd-exe -k missing: a path it names (exe=, dir=) does not exist (ENOENT); the previous rules were restored"),
        "{err}"
    );
    assert_eq!(auditctl(&["-l"]), before, "{err}");
}

/// A locked kernel (`-e 2`), as the daemon sees it with `PAUDITD_TEST_ASSUME_LOCKED=1` (the
/// machine itself is never locked: that lasts until reboot; the decision is a unit test in
/// engine/src/rules.rs): pauditd starts and becomes the audit daemon, applies nothing,
/// reports how the kernel's rules differ from its config (log and `pauditd status`), keeps
/// receiving the events of the rules in force, and deletes nothing at exit.
#[test]
fn on_a_locked_kernel_the_daemon_runs_applies_nothing_and_reports_the_difference() {
    let Some(_k) = kernel() else { return };
    let dir = tempdir("locked");
    auditctl(&["-D"]);
    let exe = format!("exe={}", echo_exe());
    auditctl(&[
        "-a",
        "always,exit",
        "-F",
        "arch=b64",
        "-S",
        "execve",
        "-F",
        &exe,
        "-k",
        "foreign-locked",
    ]);
    let before = auditctl(&["-l"]);
    assert!(before.contains("foreign-locked"), "{before}");
    let socket = dir.join("run/status.sock");
    let cfg = format!(
        "status: {{ socket: {} }}\nrules:\n  - -D\n  - -a exit,always -F arch=b64 -S getppid -k ours-locked\n  - -e 2\n",
        socket.display()
    );
    let mut d =
        Daemon::start_with_env(&dir, "locked", &cfg, &[("PAUDITD_TEST_ASSUME_LOCKED", "1")]);
    d.wait_ready();
    assert_eq!(auditctl(&["-l"]), before, "nothing applied: {}", d.log());
    assert_eq!(
        status_field("pid"),
        u64::from(d.child.id()),
        "the audit daemon"
    );
    let log = d.log();
    assert!(
        log.contains("the kernel's audit rules are locked (enabled 2, set by `-e 2`, until reboot): none applied, none deleted at exit; 1 rule(s) in force as the kernel has them"),
        "{log}"
    );
    assert!(
        log.contains("the kernel's locked audit rules differ from the config: 1 rule(s) missing, 1 unexpected; missing: -a always,exit -F arch=b64 -S getppid -F key=ours-locked; unexpected: -a always,exit -F arch=b64 -S execve -F exe="),
        "{log}"
    );
    // The rules in force are the kernel's: their events reach us.
    echo_seen_by(&d, "locked");
    let mut text = String::new();
    wait_for("the status snapshot", 20, || {
        let o = Command::new(env!("CARGO_BIN_EXE_pauditd"))
            .arg("status")
            .arg("--socket")
            .arg(&socket)
            .output()
            .unwrap();
        text = String::from_utf8_lossy(&o.stdout).into_owned();
        o.status.success() && text.contains("LOCKED")
    });
    assert!(
        text.contains("rules: LOCKED by the kernel (enabled 2, `-e 2`, until reboot): none applied; the config's differ by 1 missing, 1 unexpected"),
        "{text}"
    );
    assert!(text.contains("rules: 1 in force, drift 1"), "{text}");
    // A reload compares again: now the config asks for exactly the kernel's rule.
    let cfg_path = dir.join("locked.yaml");
    let text = std::fs::read_to_string(&cfg_path).unwrap().replace(
        "  - -a exit,always -F arch=b64 -S getppid -k ours-locked\n",
        &format!("  - -a always,exit -F arch=b64 -S execve -F {exe} -k foreign-locked\n"),
    );
    std::fs::write(&cfg_path, text).unwrap();
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(d.child.id() as i32, libc::SIGHUP) };
    wait_for("the reload", 20, || d.log().contains("reloaded "));
    let log = d.log();
    assert!(
        log.contains("the kernel's locked audit rules are exactly the config's"),
        "{log}"
    );
    assert_eq!(auditctl(&["-l"]), before, "{log}");
    let (st, log) = d.terminate();
    assert!(st.success(), "{log}");
    assert_released(&log);
    assert!(
        log.contains("the kernel's audit rules are locked (`-e 2`): left as they are"),
        "{log}"
    );
    assert_eq!(auditctl(&["-l"]), before, "nothing deleted: {log}");
}

/// The status fields a rules file may change, to put back after loading one.
fn kernel_settings() -> Vec<(&'static str, u64)> {
    ["-f", "-r", "-b", "--backlog_wait_time"]
        .iter()
        .zip([
            "failure",
            "rate_limit",
            "backlog_limit",
            "backlog_wait_time",
        ])
        .map(|(opt, name)| (*opt, status_field(name)))
        .collect()
}

fn restore_settings(settings: &[(&str, u64)]) {
    for (opt, v) in settings {
        auditctl(&[opt, &v.to_string()]);
    }
}

/// How one rules file loads with `auditctl -R` and natively.
enum FileOutcome {
    /// Both load it; `auditctl -l` lists the same rules in the same order, our rendering of
    /// the kernel's list is that text, and the lines skipped after `-i`/`-c` are the same.
    Identical { rules: usize, skipped: usize },
    /// Both refuse it (no `-i`/`-c`): ours names the line and leaves the previous (empty) list.
    BothRefuse(String),
    /// auditctl 3.0.9 stops at (or skips) a syscall its table lacks: the rest is the same.
    NewerTables(String),
}

/// Load `file` (with `--loginuid-immutable` and `-e 2` left out: they would lock this shared
/// machine until reboot) with `auditctl -R`, then natively, and compare; each leaves the
/// kernel with no rules and its settings as they were.
fn compare_rule_file(file: &Path, dir: &Path, settings: &[(&str, u64)]) -> FileOutcome {
    use pauditd_engine::auditrule::render;
    use pauditd_engine::rules::{sources, KernelRules, RuleLoader};
    let text: String = std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .map(|l| {
            let t = l.trim();
            if t == "--loginuid-immutable" || t == "-e 2" {
                "# (left out by the test)"
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let copy = dir.join(file.file_name().unwrap());
    std::fs::write(&copy, text + "\n").unwrap();
    let name = copy.display().to_string();

    auditctl(&["-D"]);
    let out = Command::new("auditctl")
        .args(["-R", &name])
        .output()
        .unwrap();
    let theirs_ok = out.status.success();
    // auditctl names each line it refused: "There was an error in line N of FILE".
    let mut theirs_skipped: Vec<usize> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter_map(|l| l.strip_prefix("There was an error in line "))
        .filter_map(|l| l.split(' ').next()?.parse().ok())
        .collect();
    theirs_skipped.sort_unstable();
    let theirs = auditctl(&["-l"]);
    auditctl(&["-D"]);
    restore_settings(settings);

    let lines = sources(&[], std::slice::from_ref(&name)).unwrap();
    if lines.is_empty() {
        // Only comments (or only what we left out): nothing to load either way.
        assert!(theirs_ok && theirs.contains("No rules"), "{name}: {theirs}");
        return FileOutcome::Identical {
            rules: 0,
            skipped: 0,
        };
    }
    let mut rules = KernelRules::new(RuleLoader::Native).unwrap();
    let ours = rules.apply(lines);
    let listed = auditctl(&["-l"]);
    let rendered: Vec<String> = rules.list().unwrap().iter().map(render).collect();
    let expected: Vec<&str> = theirs.lines().filter(|l| *l != "No rules").collect();
    let outcome = match &ours {
        Ok(applied) if theirs_ok && listed == theirs => {
            assert_eq!(
                rendered, expected,
                "{name}: our rendering differs from auditctl -l"
            );
            let mut skipped: Vec<usize> = applied
                .skipped
                .iter()
                .map(|s| {
                    s.strip_prefix(&format!("{name}:"))
                        .and_then(|r| r.split(':').next()?.parse().ok())
                        .unwrap_or_else(|| panic!("{s}"))
                })
                .collect();
            skipped.sort_unstable();
            assert_eq!(
                skipped, theirs_skipped,
                "{name}: the lines skipped after -i/-c differ from auditctl's: {:#?}",
                applied.skipped
            );
            FileOutcome::Identical {
                rules: expected.len(),
                skipped: skipped.len(),
            }
        }
        Err(e) if !theirs_ok => {
            // Ours puts the previous (empty) list back instead of leaving part of one.
            assert!(listed.contains("No rules"), "{name}: {e}: left {listed}");
            FileOutcome::BothRefuse(format!("{e}"))
        }
        Ok(applied) => {
            // auditctl 3.0.9 stops at (without -i) or skips (with it) a syscall its table
            // does not know yet (fchmodat2, lsm_set_self_attr, ...); every other rule is the
            // same, in the same order.
            let newer: Vec<&String> = applied.skipped.iter().collect();
            let ours_listed: Vec<&str> = listed.lines().filter(|l| *l != "No rules").collect();
            let common: Vec<&&str> = ours_listed
                .iter()
                .filter(|l| expected.contains(l))
                .collect();
            let only_theirs: Vec<&&str> = expected
                .iter()
                .filter(|l| !ours_listed.contains(l))
                .collect();
            let only_ours: Vec<&&str> = ours_listed
                .iter()
                .filter(|l| !expected.contains(l))
                .collect();
            assert!(
                common == expected.iter().collect::<Vec<_>>(),
                "{name}: auditctl's rules are not all in ours, in order: only auditctl's: {only_theirs:#?}\nonly ours: {only_ours:#?}\nour skipped: {newer:#?}\nauditctl skipped lines {theirs_skipped:?}"
            );
            FileOutcome::NewerTables(format!(
                "{name}: {} rules vs auditctl's {}",
                ours_listed.len(),
                expected.len()
            ))
        }
        Err(e) => panic!("{name}: auditctl loads it, we do not: {e}"),
    };
    rules.remove_all().unwrap();
    assert!(
        auditctl(&["-l"]).contains("No rules"),
        "{name}: removal left rules"
    );
    restore_settings(settings);
    outcome
}

fn rule_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "rules"))
        .collect();
    files.sort();
    files
}

#[test]
fn native_rule_files_list_exactly_as_auditctl_r_loads_them() {
    let Some(_k) = kernel() else { return };
    let shared = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/rules/audit-userspace");
    if !shared.is_dir() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "the shared rule files must be at {} in CI",
            shared.display()
        );
        eprintln!("skipping: no shared rule files at {}", shared.display());
        return;
    }
    let settings = kernel_settings();
    let dir = tempdir("rulefiles");
    let files = rule_files(&shared);
    let (mut identical, mut both_refuse, mut newer_tables) = (0, Vec::new(), Vec::new());
    for file in &files {
        match compare_rule_file(file, &dir, &settings) {
            FileOutcome::Identical { rules, skipped } => {
                eprintln!(
                    "{}: identical ({rules} rules, {skipped} lines skipped by both)",
                    file.display()
                );
                identical += 1;
            }
            FileOutcome::BothRefuse(e) => both_refuse.push(e),
            FileOutcome::NewerTables(e) => newer_tables.push(e),
        }
    }
    eprintln!(
        "{} files: {identical} identical to auditctl -R, {} refused by both:\n{}\n{} loaded further than auditctl 3.0.9's tables allow:\n{}",
        files.len(),
        both_refuse.len(),
        both_refuse.join("\n"),
        newer_tables.len(),
        newer_tables.join("\n")
    );
    assert!(
        identical >= files.len() * 2 / 3,
        "{identical} of {}",
        files.len()
    );
}

/// Widely used public rule sets (tests/data/rules/README.md): they start with `-i` and carry
/// lines this host refuses (unknown users, `-k -F ...`, an unknown field `obj`, paths that do
/// not exist). Loaded natively they must give exactly auditctl -R's list, skipping exactly the
/// lines auditctl skips.
#[test]
fn public_rule_sets_load_line_by_line_as_auditctl_r_loads_them() {
    let Some(_k) = kernel() else { return };
    let settings = kernel_settings();
    let dir = tempdir("publicrules");
    let files = rule_files(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/rules"));
    assert!(files.len() >= 2);
    for file in &files {
        match compare_rule_file(file, &dir, &settings) {
            FileOutcome::Identical { rules, skipped } => {
                eprintln!(
                    "{}: identical ({rules} rules, {skipped} lines skipped by both)",
                    file.display()
                );
                assert!(rules > 100, "{}: {rules} rules", file.display());
                assert!(skipped > 0, "{}", file.display());
            }
            FileOutcome::BothRefuse(e) => panic!("{}: refused by both: {e}", file.display()),
            FileOutcome::NewerTables(e) => panic!("{}: {e}", file.display()),
        }
    }
}

/// SIGHUP with a changed rule list while a workload runs: the unchanged rule never leaves
/// the kernel (every exec it covers is recorded), the removed one goes, the new one works.
#[test]
fn a_reload_changes_only_what_changed_with_no_window_for_the_rest() {
    let Some(_k) = kernel() else { return };
    let dir = tempdir("hupdiff");
    let keep = format!(
        "  - -a exit,always -F arch=b64 -S execve -F exe={} -k keep\n",
        echo_exe()
    );
    let mut d = Daemon::start(
        &dir,
        "hupdiff",
        &format!("rules:\n{keep}  - -a exit,always -F arch=b64 -S getppid -k gone\n  - -e 1\n"),
    );
    d.wait_ready();
    // The workload: execs of /bin/echo, each with its own marker, until told to stop.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let tag = format!("hupdiff-{}", std::process::id());
    let worker = {
        let (stop, done, tag) = (stop.clone(), done.clone(), tag.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                echo(&format!("{tag}-{n}"));
                n += 1;
                done.store(n, std::sync::atomic::Ordering::Relaxed);
            }
            n
        })
    };
    wait_for("the workload to start", 20, || {
        done.load(std::sync::atomic::Ordering::Relaxed) >= 50
    });
    let cfg = dir.join("hupdiff.yaml");
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "  - -a exit,always -F arch=b64 -S getppid -k gone\n",
        "  - -a exit,always -F arch=b64 -S uname -k added\n",
    );
    std::fs::write(&cfg, text).unwrap();
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(d.child.id() as i32, libc::SIGHUP) };
    wait_for("the reload", 20, || d.log().contains("reloaded "));
    let at_reload = done.load(std::sync::atomic::Ordering::Relaxed);
    wait_for("more of the workload", 20, || {
        done.load(std::sync::atomic::Ordering::Relaxed) >= at_reload + 50
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let n = worker.join().unwrap();
    let log = d.log();
    assert!(
        log.contains("audit rules in force: 2 (1 added, 1 removed)"),
        "{log}"
    );
    let listed = auditctl(&["-l"]);
    assert!(listed.contains("-F key=keep") && listed.contains("-F key=added"));
    assert!(!listed.contains("key=gone"), "{listed}");
    assert!(Command::new("uname").output().unwrap().status.success());
    // Every exec, before, during and after the reload, was recorded.
    let seen = |d: &Daemon| {
        let mut markers: Vec<usize> = d
            .lines()
            .iter()
            .filter_map(|l| {
                let i = l.find(&format!("{tag}-"))? + tag.len() + 1;
                l[i..]
                    .split(|c: char| !c.is_ascii_digit())
                    .next()?
                    .parse()
                    .ok()
            })
            .collect();
        markers.sort_unstable();
        markers.dedup();
        markers
    };
    wait_for("every exec's event", 30, || seen(&d).len() >= n);
    assert_eq!(seen(&d), (0..n).collect::<Vec<_>>(), "{n} execs");
    wait_for("the new rule's event", 20, || {
        d.lines().iter().any(|l| l.contains("\\\"added\\\""))
    });
    let (st, log) = d.terminate();
    assert!(st.success(), "{log}");
    assert_released(&log);
}

/// Someone else deletes our rules: the drift guard notices (at once, from the
/// CONFIG_CHANGE records) and puts them back; with `rules_drift: log` it only says so.
#[test]
fn rules_changed_behind_our_back_are_detected_and_put_back() {
    let Some(_k) = kernel() else { return };
    let dir = tempdir("drift");
    let mut d = Daemon::start(
        &dir,
        "drift",
        &format!("rules_check_interval: 1h\n{}", echo_rules()),
    );
    d.wait_ready();
    let ours = auditctl(&["-l"]);
    assert!(ours.contains("key=e2e"), "{ours}");
    auditctl(&["-D"]);
    wait_for("the drift to be put right", 20, || {
        d.log().contains("re-applied")
    });
    assert_eq!(auditctl(&["-l"]), ours);
    let log = d.log();
    assert!(
        log.contains("the kernel's audit rules differ from ours: 1 rule(s) missing, 0 unexpected; missing: -a always,exit -F arch=b64 -S execve -F exe="),
        "{log}"
    );
    echo_seen_by(&d, "drift");
    // An extra rule is drift too.
    auditctl(&[
        "-a",
        "exit,always",
        "-F",
        "arch=b64",
        "-S",
        "getppid",
        "-k",
        "intruder",
    ]);
    wait_for("the extra rule to be reported", 20, || {
        d.log().contains("0 rule(s) missing, 1 unexpected; unexpected: -a always,exit -F arch=b64 -S getppid -F key=intruder; our 1 rule(s) re-applied")
    });
    assert_eq!(auditctl(&["-l"]), ours);

    // Reload with `log`: reported and counted, not touched.
    let cfg = dir.join("drift.yaml");
    let text = std::fs::read_to_string(&cfg).unwrap() + "rules_drift: log\n";
    std::fs::write(&cfg, text).unwrap();
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(d.child.id() as i32, libc::SIGHUP) };
    wait_for("the reload", 20, || d.log().contains("reloaded "));
    auditctl(&["-D"]);
    wait_for("the drift report", 20, || {
        d.log().contains("(rules_drift: log)")
    });
    assert!(auditctl(&["-l"]).contains("No rules"));
    let (st, log) = d.terminate();
    assert!(st.success(), "{log}");
    assert_released(&log);
}

/// `rules_files` (a glob, sorted, after `rules:`) and `rules_exclude_self` reach the kernel
/// in that order.
#[test]
fn rules_files_and_self_exclusion_reach_the_kernel_in_order() {
    let Some(_k) = kernel() else { return };
    let dir = tempdir("rulesd");
    let rulesd = dir.join("rules.d");
    std::fs::create_dir_all(&rulesd).unwrap();
    std::fs::write(
        rulesd.join("20-b.rules"),
        "# second\n-a always,exit -F arch=b64 -S getppid -k from-b\n",
    )
    .unwrap();
    std::fs::write(
        rulesd.join("10-a.rules"),
        format!(
            "-D\n-b 8192\n-a always,exit -F arch=b64 -S execve -F exe={} -k e2e\n",
            echo_exe()
        ),
    )
    .unwrap();
    let mut d = Daemon::start(
        &dir,
        "rulesd",
        &format!(
            "rules_exclude_self: true\nrules:\n  - -e 1\nrules_files: ['{}/*.rules']\n",
            rulesd.display()
        ),
    );
    d.wait_ready();
    let pid = d.child.id();
    let listed = auditctl(&["-l"]);
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(
        lines,
        vec![
            format!("-a never,exit -S all -F pid={pid}").as_str(),
            format!(
                "-a always,exit -F arch=b64 -S execve -F exe={} -F key=e2e",
                echo_exe()
            )
            .as_str(),
            "-a always,exit -F arch=b64 -S getppid -F key=from-b",
        ]
    );
    echo_seen_by(&d, "rulesd");
    let (st, log) = d.terminate();
    assert!(st.success(), "{log}");
    assert_released(&log);
    assert!(auditctl(&["-l"]).contains("No rules"));
}

/// A process moved into a cgroup laid out as docker's (`pids:/docker/<64 hex>` on cgroup v1,
/// `/docker/<id>` under the v2 root otherwise): its exec event, written in the enriched
/// format with `enrichment.containers`, names that container; pauditd's format beside it is
/// unchanged.
#[test]
fn an_event_names_the_container_its_process_runs_in() {
    let Some(_k) = kernel() else { return };
    let dir = tempdir("container");
    let id = format!(
        "{:064x}",
        u128::from(std::process::id()) * 0x9e37_79b9_7f4a_7c15
    );
    // A cgroup hierarchy we may create groups in: v1's pids controller, else the v2 root.
    let base = [
        "/sys/fs/cgroup/pids",
        "/sys/fs/cgroup/unified",
        "/sys/fs/cgroup",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.join("cgroup.procs").exists())
    .expect("a cgroup hierarchy");
    let group = base.join("docker").join(&id);
    std::fs::create_dir_all(&group).unwrap();
    struct Remove(PathBuf);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir(&self.0);
            let _ = std::fs::remove_dir(self.0.parent().unwrap());
        }
    }
    let _cleanup = Remove(group.clone());
    let sleep = std::fs::canonicalize("/bin/sleep").unwrap();
    let mut d = Daemon::start_full(
        &dir,
        "container",
        ", format: enriched",
        &format!(
            "enrichment: {{ containers: true }}\nrules:\n  - -a exit,always -F arch=b64 -S execve -F exe={} -k ctr\n  - -e 1\n",
            sleep.display()
        ),
        &[],
    );
    d.wait_ready();
    // The shell moves itself into the group, then becomes `sleep` (which lives long enough
    // for the daemon to read its /proc entry).
    let st = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!(
            "echo $$ > {}/cgroup.procs && exec {} 0.5",
            group.display(),
            sleep.display()
        ))
        .status()
        .unwrap();
    assert!(st.success());
    wait_for("the enriched event", 20, || {
        d.lines().iter().any(|l| l.contains("\"rule_key\":\"ctr\""))
    });
    let line = d
        .lines()
        .into_iter()
        .find(|l| l.contains("\"rule_key\":\"ctr\""))
        .unwrap();
    let v = parse(&line);
    assert_eq!(v["version"], 2, "{line}");
    assert_eq!(v["container"]["id"], id.as_str(), "{line}");
    assert_eq!(v["container"]["runtime"], "docker", "{line}");
    assert_eq!(v["records"]["SYSCALL"]["SYSCALL"], "execve", "{line}");
    assert_eq!(
        v["records"]["EXECVE"]["ARGV"],
        serde_json::json!([sleep.display().to_string(), "0.5"]),
        "{line}"
    );
    let (st, log) = d.terminate();
    assert!(st.success(), "{log}");
    assert_released(&log);
}

/// The enriched format on real kernel records: an execve whose arguments the kernel splits
/// (one over 8 KiB, in `aN[i]` pieces), hex-encodes (non-ASCII, a newline, a space) and
/// spreads over several EXECVE records (5,000 of them), and connects to inet, inet6 and unix
/// addresses: every argument and address decoded exactly.
#[test]
fn enriched_events_decode_what_the_kernel_encodes() {
    let Some(_k) = kernel() else { return };
    let dir = tempdir("enrichedkernel");
    let echo = echo_exe();
    let mut d = Daemon::start_full(
        &dir,
        "enrichedkernel",
        ", format: enriched",
        &format!(
            "rules:\n  - -a exit,always -F arch=b64 -S execve -F exe={echo} -k argv\n  - -a exit,always -F arch=b64 -S connect -F exe={} -k net\n  - -e 1\n",
            std::fs::canonicalize(env!("CARGO_BIN_EXE_pauditd-loadgen")).unwrap().display()
        ),
        &[],
    );
    d.wait_ready();
    let long = "x".repeat(9000) + "-end";
    let mut args: Vec<String> = vec![
        format!("marker-{}", std::process::id()),
        long.clone(),
        "grün ünïcode".into(),
        "two\nlines".into(),
        "with space".into(),
    ];
    args.extend((0..5000).map(|i| format!("a{i}")));
    let st = Command::new(&echo)
        .args(&args)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let marker = args[0].clone();
    wait_for("the execve event", 30, || {
        d.lines().iter().any(|l| l.contains(&marker))
    });
    let line = d.lines().into_iter().find(|l| l.contains(&marker)).unwrap();
    let v = parse(&line);
    let argv: Vec<String> = v["records"]["EXECVE"]["ARGV"]
        .as_array()
        .unwrap_or_else(|| panic!("no ARGV: {}", &line[..line.len().min(2000)]))
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    assert_eq!(v["records"]["EXECVE"]["argc"], args.len() + 1);
    assert!(v["records"]["EXECVE"]["ARGV_TRUNCATED"].is_null());
    assert_eq!(argv[0], echo);
    assert_eq!(&argv[1..], &args[..], "every argument, decoded");
    assert_eq!(v["records"]["SYSCALL"]["SYSCALL"], "execve");
    assert_eq!(v["records"]["SYSCALL"]["ARCH"], "x86_64");
    assert_eq!(v["records"]["SYSCALL"]["UID"], "root");

    // connect(2) to three families; nothing needs to listen (the attempt is audited).
    let sock = dir.join("pauditd-test.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let out = Command::new(loadgen())
        .args([
            "--connect",
            "127.0.0.1:9",
            "--connect",
            "[::1]:9",
            "--connect",
        ])
        .arg(&sock)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for("three connect events", 30, || {
        d.lines()
            .iter()
            .filter(|l| l.contains("\"rule_key\":\"net\""))
            .count()
            >= 3
    });
    let addrs: Vec<Value> = d
        .lines()
        .iter()
        .filter(|l| l.contains("\"rule_key\":\"net\""))
        .map(|l| parse(l)["records"]["SOCKADDR"]["SADDR"].clone())
        .collect();
    assert!(
        addrs.contains(&serde_json::json!({"family": "inet", "addr": "127.0.0.1", "port": 9})),
        "{addrs:?}"
    );
    assert!(
        addrs
            .iter()
            .any(|a| a["family"] == "inet6" && a["addr"] == "::1" && a["port"] == 9),
        "{addrs:?}"
    );
    assert!(
        addrs.contains(&serde_json::json!({"family": "unix", "path": sock.display().to_string()})),
        "{addrs:?}"
    );
    let (st, log) = d.terminate();
    assert!(st.success(), "{log}");
    assert_released(&log);
}

/// Lineage on a real fork chain: the test starts `sh` (its exec is an event), `sh` forks and
/// execs `echo`: the echo event's parent is that `sh`, with the sequence of the event that
/// exec'd it; the `sh` event's parent is this test process (read from /proc).
#[test]
fn an_event_names_its_parent_and_the_exec_that_made_it() {
    let Some(_k) = kernel() else { return };
    let dir = tempdir("lineage");
    let mut d = Daemon::start_full(
        &dir,
        "lineage",
        ", format: enriched",
        "enrichment: { lineage: true }\nrules:\n  - -a exit,always -F arch=b64 -S execve -k lin\n  - -e 1\n",
        &[],
    );
    d.wait_ready();
    let marker = format!("lineage-{}", std::process::id());
    // `sleep` keeps the shell alive while its child's event is processed.
    let mut sh = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!("/bin/echo {marker}; sleep 0.5"))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let sh_pid = sh.id();
    assert!(sh.wait().unwrap().success());
    let find = |d: &Daemon, pred: &dyn Fn(&Value) -> bool| -> Option<Value> {
        d.lines().iter().map(|l| parse(l)).find(|v| pred(v))
    };
    let is_sh = |v: &Value| v["records"]["SYSCALL"]["pid"] == sh_pid;
    let is_echo = |v: &Value| {
        v["records"]["EXECVE"]["ARGV"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x == marker.as_str()))
    };
    wait_for("both exec events", 20, || {
        find(&d, &is_sh).is_some() && find(&d, &is_echo).is_some()
    });
    let sh_event = find(&d, &is_sh).unwrap();
    let echo_event = find(&d, &is_echo).unwrap();
    let parent = &echo_event["parent"];
    assert_eq!(parent["pid"], sh_pid, "{echo_event}");
    assert_eq!(parent["exec_event"], sh_event["sequence"], "{echo_event}");
    assert_eq!(
        parent["exe"], sh_event["records"]["SYSCALL"]["exe"],
        "{echo_event}"
    );
    assert_eq!(parent["ppid"], std::process::id(), "{echo_event}");
    // The shell's own parent is this test process, read from /proc (no exec seen).
    assert_eq!(sh_event["parent"]["pid"], std::process::id(), "{sh_event}");
    assert!(sh_event["parent"]["exec_event"].is_null());
    let (st, log) = d.terminate();
    assert!(st.success(), "{log}");
    assert_released(&log);
}

/// A pid used again: the test's first shell (`dash`, pid P) runs `echo` and exits; a second
/// shell (`bash`) is given the same pid P (through `ns_last_pid`) and runs `echo` too. Each
/// echo's parent is its own shell (exe and exec event), never the other: the process table
/// is keyed by (pid, start time). Written in `format: ecs` (the fork-chain test above covers
/// lineage in the enriched format): `process.parent.*` and `auditd.parent.exec_sequence`.
#[test]
fn a_reused_pid_never_gets_the_previous_process_as_parent() {
    let Some(_k) = kernel() else { return };
    let dir = tempdir("pidreuse");
    let mut d = Daemon::start_full(
        &dir,
        "pidreuse",
        ", format: ecs",
        "enrichment: { lineage: true }\nrules:\n  - -a exit,always -F arch=b64 -S execve -k reuse\n  - -e 1\n",
        &[],
    );
    d.wait_ready();
    let tag = std::process::id();
    let run = |shell: &str, marker: &str| -> u32 {
        let mut c = Command::new(shell)
            .arg("-c")
            .arg(format!("/bin/echo {marker}; sleep 0.3"))
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let pid = c.id();
        assert!(c.wait().unwrap().success());
        pid
    };
    let first = run("/bin/sh", &format!("first-{tag}"));
    // Ask the kernel for the same pid next; other processes may fork in between: retry.
    let mut second = None;
    for attempt in 0..50 {
        std::fs::write("/proc/sys/kernel/ns_last_pid", format!("{}", first - 1)).unwrap();
        let marker = format!("second-{tag}-{attempt}");
        let pid = run("/bin/bash", &marker);
        if pid == first {
            second = Some(marker);
            break;
        }
    }
    let second = second.expect("the kernel gave the first shell's pid again within 50 tries");
    let echo_of = |d: &Daemon, marker: &str| -> Option<Value> {
        d.lines().iter().map(|l| parse(l)).find(|v| {
            v["process"]["args"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x == marker))
        })
    };
    let shell_of = |d: &Daemon, exe: &str| -> Vec<Value> {
        d.lines()
            .iter()
            .map(|l| parse(l))
            .filter(|v| v["process"]["pid"] == first && v["process"]["executable"] == exe)
            .collect()
    };
    let first_marker = format!("first-{tag}");
    wait_for("both echo events", 20, || {
        echo_of(&d, &first_marker).is_some() && echo_of(&d, &second).is_some()
    });
    let dash = shell_of(&d, "/usr/bin/dash");
    let bash = shell_of(&d, "/usr/bin/bash");
    assert_eq!(dash.len(), 1, "one exec of dash as pid {first}");
    assert!(!bash.is_empty(), "bash ran as pid {first}");
    let e1 = echo_of(&d, &first_marker).unwrap();
    let e2 = echo_of(&d, &second).unwrap();
    let parent = |v: &Value| v["process"]["parent"].clone();
    assert_eq!(parent(&e1)["pid"], first, "{e1}");
    assert_eq!(parent(&e2)["pid"], first, "{e2}");
    assert_eq!(parent(&e1)["executable"], "/usr/bin/dash", "{e1}");
    assert_eq!(parent(&e2)["executable"], "/usr/bin/bash", "{e2}");
    assert_eq!(
        e1["auditd"]["parent"]["exec_sequence"], dash[0]["auditd"]["sequence"],
        "{e1}"
    );
    let bash_exec = bash.last().unwrap()["auditd"]["sequence"].clone();
    assert_eq!(e2["auditd"]["parent"]["exec_sequence"], bash_exec, "{e2}");
    let (st, log) = d.terminate();
    assert!(st.success(), "{log}");
    assert_released(&log);
}

/// `format: ecs` on real kernel records: an execve's arguments (non-ASCII, a newline, a
/// space) as `process.args`, ids with user and group names, and connects to inet and inet6
/// addresses as `destination` with `network.direction: egress`, as auditbeat writes them.
#[test]
fn ecs_events_read_real_kernel_records_as_auditbeat_does() {
    let Some(_k) = kernel() else { return };
    let dir = tempdir("ecskernel");
    let echo = echo_exe();
    let mut d = Daemon::start_full(
        &dir,
        "ecskernel",
        ", format: ecs",
        &format!(
            "rules:\n  - -a exit,always -F arch=b64 -S execve -F exe={echo} -k argv\n  - -a exit,always -F arch=b64 -S connect -F exe={} -k net\n  - -e 1\n",
            std::fs::canonicalize(env!("CARGO_BIN_EXE_pauditd-loadgen")).unwrap().display()
        ),
        &[],
    );
    d.wait_ready();
    let args: Vec<String> = vec![
        format!("ecs-marker-{}", std::process::id()),
        "grün ünïcode".into(),
        "two\nlines".into(),
        "with space".into(),
    ];
    let st = Command::new(&echo)
        .args(&args)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let find = |d: &Daemon| {
        d.lines().iter().map(|l| parse(l)).find(|v| {
            v["process"]["args"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x == args[0].as_str()))
        })
    };
    wait_for("the execve event", 30, || find(&d).is_some());
    let v = find(&d).unwrap();
    let got: Vec<&str> = v["process"]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(got[0], echo);
    assert_eq!(
        &got[1..],
        &args.iter().map(String::as_str).collect::<Vec<_>>()[..]
    );
    assert_eq!(v["event"]["action"], "executed", "{v}");
    assert_eq!(
        v["event"]["category"],
        serde_json::json!(["process"]),
        "{v}"
    );
    assert_eq!(v["event"]["outcome"], "success", "{v}");
    assert_eq!(v["process"]["executable"], echo, "{v}");
    assert_eq!(v["auditd"]["data"]["syscall"], "execve", "{v}");
    assert_eq!(v["auditd"]["data"]["arch"], "x86_64", "{v}");
    assert_eq!(v["user"]["id"], "0", "{v}");
    assert_eq!(v["user"]["name"], "root", "{v}");
    assert_eq!(v["user"]["group"]["name"], "root", "{v}");
    assert_eq!(v["tags"], serde_json::json!(["argv"]), "{v}");

    let out = Command::new(loadgen())
        .args(["--connect", "127.0.0.1:9", "--connect", "[::1]:9"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let nets = |d: &Daemon| -> Vec<Value> {
        d.lines()
            .iter()
            .map(|l| parse(l))
            .filter(|v| v["tags"] == serde_json::json!(["net"]))
            .collect()
    };
    wait_for("two connect events", 30, || nets(&d).len() >= 2);
    let dests: Vec<Value> = nets(&d).iter().map(|v| v["destination"].clone()).collect();
    assert!(
        dests.contains(&serde_json::json!({"ip": "127.0.0.1", "port": "9"})),
        "{dests:?}"
    );
    assert!(
        dests.contains(&serde_json::json!({"ip": "::1", "port": "9"})),
        "{dests:?}"
    );
    for v in nets(&d) {
        assert_eq!(v["event"]["action"], "connected-to", "{v}");
        assert_eq!(v["network"]["direction"], "egress", "{v}");
        assert_eq!(v["auditd"]["data"]["syscall"], "connect", "{v}");
    }
    let (st, log) = d.terminate();
    assert!(st.success(), "{log}");
    assert_released(&log);
}

/// A reload that switches the file output to `format: enriched` starts group-name lookups
/// (the daemon started without them: pauditd's format has no group names).
#[test]
fn a_reload_to_the_enriched_format_brings_group_names() {
    let Some(_k) = kernel() else { return };
    let dir = tempdir("hupformat");
    let mut d = Daemon::start(&dir, "hupformat", &echo_rules());
    d.wait_ready();
    echo("before-format");
    wait_for("first event", 20, || {
        d.lines().iter().any(|l| l.contains("before-format"))
    });
    let cfg = dir.join("hupformat.yaml");
    let out = dir.join("hupformat.jsonl");
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        &format!("path: {} }}", out.display()),
        &format!("path: {}, format: enriched }}", out.display()),
    );
    assert!(text.contains("format: enriched"), "{text}");
    std::fs::write(&cfg, text).unwrap();
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(d.child.id() as i32, libc::SIGHUP) };
    wait_for("reload", 20, || d.log().contains("reloaded"));
    echo("after-format");
    wait_for("the enriched event", 20, || {
        d.lines()
            .iter()
            .any(|l| l.contains("after-format") && l.contains("\"records\""))
    });
    let line = d
        .lines()
        .into_iter()
        .find(|l| l.contains("after-format") && l.contains("\"records\""))
        .unwrap();
    let v = parse(&line);
    assert_eq!(v["records"]["SYSCALL"]["gid"], 0, "{line}");
    assert_eq!(v["records"]["SYSCALL"]["GID"], "root", "{line}");
    let (st, log) = d.terminate();
    assert!(st.success(), "{log}");
    assert_released(&log);
}

/// `pauditd status` keeps an output's counts across a reload that replaced it (the old
/// instance's deliveries still count).
#[test]
fn status_counts_survive_an_output_replacing_reload() {
    let Some(_k) = kernel() else { return };
    let dir = tempdir("status-reload");
    let socket = dir.join("run/status.sock");
    let mut d = Daemon::start(
        &dir,
        "streload",
        &format!(
            "status: {{ socket: {} }}\n{}",
            socket.display(),
            echo_rules()
        ),
    );
    d.wait_ready();
    let status = || -> Option<Value> {
        let o = Command::new(env!("CARGO_BIN_EXE_pauditd"))
            .args(["status", "--json", "--socket"])
            .arg(&socket)
            .output()
            .ok()?;
        serde_json::from_slice(&o.stdout).ok()
    };
    echo("pauditd-streload-1");
    let mut before = 0;
    wait_for("the first event in the status", 20, || {
        let lines = d.lines().len() as u64;
        before = status()
            .and_then(|v| v["outputs"][0]["delivered"].as_u64())
            .unwrap_or(0);
        lines >= 1 && before == lines
    });
    // A change of the file output's settings replaces its instance.
    let cfg = dir.join("streload.yaml");
    let out = d.out.display().to_string();
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        &format!("path: {out}"),
        &format!("path: {out}, attempts: 2"),
    );
    std::fs::write(&cfg, text).unwrap();
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(d.child.id() as i32, libc::SIGHUP) };
    wait_for("reload", 20, || d.log().contains("reloaded"));
    assert!(!d.log().contains("outputs unchanged"), "{}", d.log());
    echo("pauditd-streload-2");
    wait_for("both events counted in the status", 20, || {
        let lines = d.lines().len() as u64;
        let v = status();
        let delivered = v
            .as_ref()
            .and_then(|v| v["outputs"][0]["delivered"].as_u64())
            .unwrap_or(0);
        d.lines().iter().any(|l| l.contains("pauditd-streload-2"))
            && delivered == lines
            && delivered > before
    });
    let v = status().unwrap();
    assert_eq!(v["outputs"].as_array().unwrap().len(), 1, "{v}");
    let (st, log) = d.terminate();
    assert!(st.success(), "{log}");
    assert!(
        log.contains("exit: output file: ") && log.contains("(summed over 2 instances"),
        "{log}"
    );
    assert_released(&log);
}

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

fn signal(d: &Daemon, sig: i32) {
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(d.child.id() as i32, sig) };
}

/// Wait for the daemon to exit by itself (no signal) within `secs`.
#[cfg(feature = "failpoints")]
fn wait_exit(d: &mut Daemon, secs: u64) -> (std::process::ExitStatus, String) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(st) = d.child.try_wait().unwrap() {
            std::thread::sleep(Duration::from_millis(50));
            return (st, d.log());
        }
        assert!(
            Instant::now() < deadline,
            "daemon still running after {secs} s: {}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Run /bin/echo once per marker `pauditd-{tag}-{i}-{pid}`; returns the markers.
fn echo_markers(tag: &str, n: usize) -> Vec<String> {
    let markers: Vec<String> = (0..n)
        .map(|i| format!("pauditd-{tag}-{i}-{}", std::process::id()))
        .collect();
    for m in &markers {
        echo(m);
    }
    markers
}

fn missing_in<'a>(markers: &'a [String], text: &str) -> Vec<&'a String> {
    markers
        .iter()
        .filter(|m| !text.contains(m.as_str()))
        .collect()
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

/// A cgroup v2 hierarchy we may create groups in (the unified mount of a hybrid layout, or
/// the v2 root), else v1's pids controller.
fn cgroup_base() -> PathBuf {
    [
        "/sys/fs/cgroup/unified",
        "/sys/fs/cgroup",
        "/sys/fs/cgroup/pids",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.join("cgroup.procs").exists())
    .expect("a cgroup hierarchy")
}

/// Removes the cgroups (deepest first) once their processes are gone.
struct RemoveCgroups(Vec<PathBuf>);
impl Drop for RemoveCgroups {
    fn drop(&mut self) {
        for g in &self.0 {
            for _ in 0..100 {
                if !g.exists() || std::fs::remove_dir(g).is_ok() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Issue #22: a user with a delegated cgroup subtree (created here and chowned to `nobody`,
/// as systemd delegation does) names a cgroup in it `docker-<id>.scope`, moves itself in
/// and execs: the event is written (a drop filter for that id and that unit does not drop
/// it), not attributed to the container, and says what was claimed under
/// `untrusted_attribution`. A root-owned `docker-<id>.scope` is still attributed.
#[test]
fn a_container_a_user_names_is_not_attributed_nor_filtered_on() {
    let Some(_k) = kernel() else { return };
    let dir = tempdir("forged");
    let tag = u128::from(std::process::id());
    // Different from the first digit, so the drop filter's prefix names only the forged one.
    let forged = format!("f{:063x}", tag * 0x9e37_79b9_7f4a_7c15);
    let real = format!("a{:063x}", tag * 0x9e37_79b9_7f4a_7c15);
    let base = cgroup_base();
    let delegated = base.join(format!("pauditd-delegated-{tag}"));
    let user_group = delegated.join(format!("docker-{forged}.scope"));
    let runtime = base.join(format!("pauditd-runtime-{tag}.slice"));
    let real_group = runtime.join(format!("docker-{real}.scope"));
    let _cleanup = RemoveCgroups(vec![
        user_group.clone(),
        delegated.clone(),
        real_group.clone(),
        runtime.clone(),
    ]);
    std::fs::create_dir_all(&delegated).unwrap();
    std::fs::create_dir_all(&real_group).unwrap();
    // Delegation: the directory and its procs/threads/subtree_control files are the user's.
    for f in [
        "",
        "cgroup.procs",
        "cgroup.threads",
        "cgroup.subtree_control",
    ] {
        let p = delegated.join(f);
        if p.exists() {
            std::os::unix::fs::chown(&p, Some(65534), Some(65534)).unwrap();
        }
    }
    let sleep = std::fs::canonicalize("/bin/sleep").unwrap();
    let mut d = Daemon::start_full(
        &dir,
        "forged",
        ", format: enriched",
        &format!(
            "enrichment: {{ containers: true }}\nevent_filters:\n  - {{name: drop-forged, container: '{}'}}\n  - {{name: drop-unit, unit: 'docker-{forged}.scope'}}\nrules:\n  - -a exit,always -F arch=b64 -S execve -F exe={} -k ctr\n  - -e 1\n",
            &forged[..12],
            sleep.display()
        ),
        &[],
    );
    d.wait_ready();
    // As root: into the delegated subtree; then as nobody: create the runtime-shaped cgroup
    // there, move in, exec sleep (audited).
    let user = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!(
            "echo $$ > {d}/cgroup.procs && exec setpriv --reuid=65534 --regid=65534 --clear-groups /bin/sh -c 'mkdir {u} && echo $$ > {u}/cgroup.procs && exec {s} 0.5'",
            d = delegated.display(),
            u = user_group.display(),
            s = sleep.display()
        ))
        .spawn()
        .unwrap();
    let user_pid = user.id();
    let st = user.wait_with_output().unwrap().status;
    assert!(st.success(), "the delegated user's exec");
    let root = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!(
            "echo $$ > {}/cgroup.procs && exec {} 0.5",
            real_group.display(),
            sleep.display()
        ))
        .spawn()
        .unwrap();
    let root_pid = root.id();
    assert!(root.wait_with_output().unwrap().status.success());
    let event_of = |d: &Daemon, pid: u32| {
        d.lines()
            .iter()
            .map(|l| parse(l))
            .find(|v| v["records"]["SYSCALL"]["pid"] == pid)
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while event_of(&d, user_pid).is_none() || event_of(&d, root_pid).is_none() {
        assert!(
            Instant::now() < deadline,
            "both exec events (pids {user_pid}, {root_pid}); written: {:?}; log: {}",
            d.lines(),
            d.log()
        );
        std::thread::sleep(Duration::from_millis(25));
    }
    let forged_event = event_of(&d, user_pid).unwrap();
    assert_eq!(
        forged_event["records"]["SYSCALL"]["uid"], 65534,
        "{forged_event}"
    );
    assert!(forged_event["container"].is_null(), "{forged_event}");
    assert!(forged_event["service"].is_null(), "{forged_event}");
    assert_eq!(
        forged_event["untrusted_attribution"]["container_id"],
        forged.as_str(),
        "{forged_event}"
    );
    assert_eq!(
        forged_event["untrusted_attribution"]["service"],
        format!("docker-{forged}.scope"),
        "{forged_event}"
    );
    let real_event = event_of(&d, root_pid).unwrap();
    assert_eq!(real_event["container"]["id"], real.as_str(), "{real_event}");
    assert_eq!(real_event["container"]["runtime"], "docker", "{real_event}");
    assert_eq!(
        real_event["service"],
        format!("docker-{real}.scope"),
        "{real_event}"
    );
    assert!(
        real_event["untrusted_attribution"].is_null(),
        "{real_event}"
    );
    let (st, log) = d.terminate();
    assert!(st.success(), "{log}");
    assert!(log.contains("untrusted_attributions=1"), "{log}");
    assert!(
        log.contains("filter.drop-forged=0")
            && log.contains("filter.drop-unit=0")
            && log.contains("events_filtered=0"),
        "{log}"
    );
    assert_released(&log);
}

/// Issue #22: a pid reused while the daemon lags. The daemon is stopped (SIGSTOP); process A
/// (pid P) execs `sleep` (audited) and exits; a shell B is given pid P (`ns_last_pid`),
/// moves into a root-owned docker-shaped cgroup and runs `echo` then `sleep` (both audited,
/// as B's children); then the daemon
/// goes on (SIGCONT) and reads `/proc/P`, which is B's. A's event gets neither B's container
/// nor a lineage entry: B's echo's parent is B (dash, no exec event), not A's `sleep`.
#[test]
fn a_pid_reused_while_the_daemon_lags_gets_no_wrong_parent_or_container() {
    let Some(_k) = kernel() else { return };
    let dir = tempdir("lagreuse");
    let tag = u128::from(std::process::id());
    let id = format!("{:064x}", tag * 0x9e37_79b9_7f4a_7c15 + 3);
    let runtime = cgroup_base().join(format!("pauditd-lag-{tag}.slice"));
    let group = runtime.join(format!("docker-{id}.scope"));
    let _cleanup = RemoveCgroups(vec![group.clone(), runtime.clone()]);
    std::fs::create_dir_all(&group).unwrap();
    let sleep = std::fs::canonicalize("/bin/sleep").unwrap();
    let echo = echo_exe();
    let mut d = Daemon::start_full(
        &dir,
        "lagreuse",
        ", format: enriched",
        &format!(
            "enrichment: {{ containers: true, lineage: true }}\nrules:\n  - -a exit,always -F arch=b64 -S execve -F exe={} -k lag\n  - -a exit,always -F arch=b64 -S execve -F exe={echo} -k lag\n  - -e 1\n",
            sleep.display()
        ),
        &[],
    );
    d.wait_ready();
    let daemon = d.child.id() as i32;
    struct Continue(i32);
    impl Drop for Continue {
        fn drop(&mut self) {
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(self.0, libc::SIGCONT) };
        }
    }
    // SAFETY: kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(daemon, libc::SIGSTOP) }, 0);
    let resume = Continue(daemon);
    let a = Command::new(&sleep).arg("0").spawn().unwrap();
    let p = a.id();
    assert!(a.wait_with_output().unwrap().status.success());
    // B must start visibly later than A's event: start times count 10 ms ticks and the check
    // allows `START_SLACK_MS` (10 ms); a pid reused sooner cannot be told apart (and takes
    // ns_last_pid, i.e. root, or wrapping the pid space that fast).
    std::thread::sleep(Duration::from_millis(100));
    let mut b = None;
    for attempt in 0..50 {
        std::fs::write("/proc/sys/kernel/ns_last_pid", format!("{}", p - 1)).unwrap();
        let marker = format!("lag-{tag}-{attempt}");
        let mut c = Command::new("/bin/sh")
            .arg("-c")
            .arg(format!(
                "echo $$ > {}/cgroup.procs && {echo} {marker} && {} 3; true",
                group.display(),
                sleep.display()
            ))
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        if c.id() == p {
            b = Some((c, marker));
            break;
        }
        let _ = c.kill();
        let _ = c.wait();
    }
    let (mut b, marker) = b.expect("the kernel gave A's pid again within 50 tries");
    // B has run its echo (a child of B, in the container) before the daemon goes on: its
    // next child, sleep, is running.
    wait_for("B's echo to exit", 10, || {
        std::fs::read_to_string(format!("/proc/{p}/task/{p}/children")).is_ok_and(|c| {
            c.split_whitespace().any(|c| {
                std::fs::read_to_string(format!("/proc/{c}/comm"))
                    .is_ok_and(|comm| comm.trim() == "sleep")
            })
        })
    });
    drop(resume);
    let find = |d: &Daemon, pred: &dyn Fn(&Value) -> bool| -> Option<Value> {
        d.lines().iter().map(|l| parse(l)).find(|v| pred(v))
    };
    let is_a = |v: &Value| {
        v["records"]["SYSCALL"]["pid"] == p
            && v["records"]["EXECVE"]["ARGV"]
                == serde_json::json!([sleep.display().to_string(), "0"])
    };
    let is_echo = |v: &Value| {
        v["records"]["EXECVE"]["ARGV"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x == marker.as_str()))
    };
    wait_for("A's and B's echo's events", 20, || {
        find(&d, &is_a).is_some() && find(&d, &is_echo).is_some()
    });
    let ev_a = find(&d, &is_a).unwrap();
    let ev_echo = find(&d, &is_echo).unwrap();
    // A ran in no container: B's (which holds pid P now) is not A's.
    assert!(ev_a["container"].is_null(), "{ev_a}");
    // A's parent is this test process (alive and older than A): still right.
    assert!(
        ev_a["parent"].is_null() || ev_a["parent"]["pid"] == std::process::id(),
        "{ev_a}"
    );
    // B's echo's parent is B: its shell, never A's sleep nor A's exec event.
    let parent = &ev_echo["parent"];
    assert_eq!(parent["pid"], p, "{ev_echo}");
    assert_ne!(parent["exe"], sleep.display().to_string(), "{ev_echo}");
    assert!(parent["exec_event"].is_null(), "{ev_echo}");
    let _ = b.kill();
    let _ = b.wait();
    let (st, log) = d.terminate();
    assert!(st.success(), "{log}");
    assert!(log.contains("pid_reused="), "{log}");
    assert_released(&log);
}

/// Issue #22: a rules file made world-writable (and given `-e 0`) is refused at SIGHUP,
/// naming the file and why; the running rules stay in force and auditing stays on. Owned by
/// another user or in a 0777 directory is refused the same way (`check-config` and start-up
/// refuse all three: tests/harden.rs and the engine's unit test).
#[test]
fn sighup_refuses_a_rules_file_another_user_could_rewrite_and_keeps_the_rules() {
    let Some(_k) = kernel() else { return };
    let dir = tempdir("unsaferules");
    let rules_d = dir.join("rules.d");
    std::fs::create_dir_all(&rules_d).unwrap();
    let file = rules_d.join("50-file.rules");
    std::fs::write(
        &file,
        "-a exit,always -F arch=b64 -S getppid -k from-file\n",
    )
    .unwrap();
    let set_mode = |m: u32| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(m)).unwrap();
    };
    set_mode(0o644);
    let mut d = Daemon::start(
        &dir,
        "unsaferules",
        &format!(
            "{}rules_files: ['{}/*.rules']\n",
            echo_rules(),
            rules_d.display()
        ),
    );
    d.wait_ready();
    let before = auditctl(&["-l"]);
    assert!(
        before.contains("key=from-file") && before.contains("key=e2e"),
        "{before}"
    );
    // Anyone may now write it, and someone did.
    set_mode(0o666);
    let mut text = std::fs::read_to_string(&file).unwrap();
    text += "-A exit,never -F uid=65534\n-e 0\n";
    std::fs::write(&file, text).unwrap();
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(d.child.id() as i32, libc::SIGHUP) };
    wait_for("the reload to fail", 20, || {
        d.log().contains("reload failed")
    });
    let log = d.log();
    assert!(
        log.contains(&format!(
            "{} is writable by everyone (mode 0666)",
            file.display()
        )),
        "{log}"
    );
    assert_eq!(auditctl(&["-l"]), before, "the running rules, exactly");
    assert_eq!(status_field("enabled"), 1, "auditing still on");
    echo_seen_by(&d, "unsaferules");
    let (st, log) = d.terminate();
    assert!(st.success(), "{log}");
    assert_released(&log);
}
