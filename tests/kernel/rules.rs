//! The daemon's audit rules: start-up failures, a public rule set with `-i`, a locked kernel,
//! reloads, the drift guard, `rules_files` and self-exclusion.

use crate::harness::*;

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
/// engine/src/rules/tests.rs): pauditd starts and becomes the audit daemon, applies nothing,
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
