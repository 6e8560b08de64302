//! Privileges: dropped to an unprivileged user the daemon keeps only what it needs.

use crate::harness::*;

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
