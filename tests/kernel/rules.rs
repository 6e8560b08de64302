//! Audit rules: the native loader against auditctl (encodings, rule files, public rule sets),
//! start-up failures, reloads, the drift guard, a locked kernel.

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
    let err = start_fails(&cfg);
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
