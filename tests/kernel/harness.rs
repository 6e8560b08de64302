//! The one harness of the kernel tests: the kernel guard (in-process mutex and machine-wide
//! flock, rules deleted and settings restored on drop), the daemon under test (start, wait,
//! signal, terminate), waiting, and the audited `/bin/echo` and load generator helpers.

pub(crate) use std::io::{BufRead, BufReader};
pub(crate) use std::path::{Path, PathBuf};
pub(crate) use std::process::{Child, Command, Stdio};
pub(crate) use std::sync::{Arc, Mutex, MutexGuard};
pub(crate) use std::time::{Duration, Instant};

pub(crate) use serde_json::Value;

pub(crate) static KERNEL: Mutex<()> = Mutex::new(());

pub(crate) fn auditctl(args: &[&str]) -> String {
    let out = Command::new("auditctl")
        .args(args)
        .output()
        .expect("auditctl");
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

pub(crate) fn status_field(name: &str) -> u64 {
    auditctl(&["-s"])
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!("{name} "))
                .map(|v| v.trim().parse().unwrap_or(0))
        })
        .unwrap_or(0)
}

/// Holds the lock and restores the kernel on drop, whatever happened.
pub(crate) struct KernelGuard {
    pub(crate) enabled_at_start: u64,
    pub(crate) backlog_limit_at_start: u64,
    pub(crate) _lock: MutexGuard<'static, ()>,
    /// Held (flock) while the test runs: other test processes (another checkout, another
    /// test binary) wait for it, as only one process can be the audit daemon.
    pub(crate) _machine_lock: std::fs::File,
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

pub(crate) fn kernel() -> Option<KernelGuard> {
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

pub(crate) struct Daemon {
    pub(crate) child: Child,
    pub(crate) stderr: Arc<Mutex<String>>,
    pub(crate) out: PathBuf,
}

impl Daemon {
    pub(crate) fn start(dir: &Path, name: &str, extra_config: &str) -> Daemon {
        Daemon::start_with_env(dir, name, extra_config, &[])
    }

    pub(crate) fn start_with_env(
        dir: &Path,
        name: &str,
        extra_config: &str,
        env: &[(&str, &str)],
    ) -> Daemon {
        Daemon::start_full(dir, name, "", extra_config, env)
    }

    /// `file_options`: more keys of the file output (`format: enriched`).
    pub(crate) fn start_full(
        dir: &Path,
        name: &str,
        file_options: &str,
        extra_config: &str,
        env: &[(&str, &str)],
    ) -> Daemon {
        Daemon::start_stdout(dir, name, file_options, extra_config, env, Stdio::null())
    }

    /// As [`start_full`](Self::start_full) with the daemon's stdout going to `stdout`.
    pub(crate) fn start_stdout(
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

    pub(crate) fn log(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Wait until the daemon says it is processing (or exits).
    pub(crate) fn wait_ready(&mut self) {
        wait_for("daemon start", 30, || {
            if let Some(st) = self.child.try_wait().unwrap() {
                panic!("daemon exited early ({st}): {}", self.log());
            }
            let l = self.log();
            l.contains("Started processing events")
        });
    }

    pub(crate) fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    pub(crate) fn terminate(mut self) -> (std::process::ExitStatus, String) {
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

impl Daemon {
    /// `kill -9`: no shutdown, no release of the audit pid.
    pub(crate) fn kill_9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        drop(self);
    }
}

/// After a `kill -9`: delete the rules and wait until the kernel, noticing the dead pid by
/// itself, lets go of the dead daemon.
pub(crate) fn forget_dead_daemon() {
    auditctl(&["-D"]);
    wait_for("the kernel to let go of the dead daemon", 30, || {
        let pid = status_field("pid");
        pid == 0 || !Path::new(&format!("/proc/{pid}")).exists()
    });
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub(crate) fn wait_for(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

pub(crate) fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pauditd-kernel-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub(crate) fn echo_exe() -> String {
    std::fs::canonicalize("/bin/echo")
        .unwrap()
        .display()
        .to_string()
}

/// Run /bin/echo (audited by [`echo_rules`]) with `arg`.
pub(crate) fn echo(arg: &str) {
    assert!(Command::new("/bin/echo")
        .arg(arg)
        .stdout(Stdio::null())
        .status()
        .unwrap()
        .success());
}

/// Run /bin/echo with a marker naming `tag` and wait until `d` wrote its event; returns the
/// marker.
pub(crate) fn echo_seen_by(d: &Daemon, tag: &str) -> String {
    let marker = format!("pauditd-{tag}-{}", std::process::id());
    echo(&marker);
    wait_for("the echo event", 20, || {
        d.lines().iter().any(|l| l.contains(&marker))
    });
    marker
}

/// Rules auditing exec of /bin/echo under the key `e2e`, and enabling auditing.
pub(crate) fn echo_rules() -> String {
    format!(
        "rules:\n  - -a exit,always -F arch=b64 -S execve -F exe={} -k e2e\n  - -e 1\n",
        echo_exe()
    )
}

pub(crate) fn loadgen() -> String {
    std::fs::canonicalize(env!("CARGO_BIN_EXE_pauditd-loadgen"))
        .unwrap()
        .display()
        .to_string()
}

pub(crate) fn parse(line: &str) -> Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

pub(crate) fn types(ev: &Value) -> Vec<u64> {
    ev["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["type"].as_u64().unwrap())
        .collect()
}

pub(crate) fn assert_released(log: &str) {
    let pid = status_field("pid");
    assert!(
        pid == 0 || !Path::new(&format!("/proc/{pid}")).exists(),
        "audit pid {pid} still held; log:\n{log}"
    );
}

pub(crate) fn load_rules(backlog: u32) -> String {
    format!(
        "rules:\n  - -b {backlog}\n  - -a exit,always -F arch=b64 -S getppid -F exe={} -k load\n  - -e 1\n",
        loadgen()
    )
}

/// Run the daemon on `cfg`, expecting start-up to fail: exit 1 (78 when the config itself is
/// refused), and the audit pid let go. Returns what it printed.
pub(crate) fn start_fails(cfg: &Path) -> String {
    start_fails_with(cfg, 1)
}

pub(crate) fn start_fails_with(cfg: &Path, code: i32) -> String {
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

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) fn which(name: &str) -> Result<PathBuf, ()> {
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(name))
                .find(|f| f.is_file())
        })
        .ok_or(())
}

/// The status fields a rules file may change, to put back after loading one.
pub(crate) fn kernel_settings() -> Vec<(&'static str, u64)> {
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

pub(crate) fn restore_settings(settings: &[(&str, u64)]) {
    for (opt, v) in settings {
        auditctl(&[opt, &v.to_string()]);
    }
}

pub(crate) fn signal(d: &Daemon, sig: i32) {
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(d.child.id() as i32, sig) };
}

/// Wait for the daemon to exit by itself (no signal) within `secs`.
#[cfg(feature = "failpoints")]
pub(crate) fn wait_exit(d: &mut Daemon, secs: u64) -> (std::process::ExitStatus, String) {
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
pub(crate) fn echo_markers(tag: &str, n: usize) -> Vec<String> {
    let markers: Vec<String> = (0..n)
        .map(|i| format!("pauditd-{tag}-{i}-{}", std::process::id()))
        .collect();
    for m in &markers {
        echo(m);
    }
    markers
}

pub(crate) fn missing_in<'a>(markers: &'a [String], text: &str) -> Vec<&'a String> {
    markers
        .iter()
        .filter(|m| !text.contains(m.as_str()))
        .collect()
}
