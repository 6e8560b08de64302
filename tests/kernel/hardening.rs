//! Issue 22's adversary, a local user: attribution that cannot be forged, pid reuse under lag,
//! rules files another user could rewrite.

use crate::harness::*;

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
