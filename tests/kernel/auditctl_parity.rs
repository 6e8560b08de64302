//! The native rule loader against auditctl, the oracle: rule encodings, audit-userspace's
//! rule files and public rule sets load exactly as `auditctl -R` loads them.

use crate::harness::*;

/// The kernel's listing of every rule, parsed.
fn kernel_rules(
    sock: &pauditd_engine::netlink::AuditSocket,
) -> Vec<pauditd_engine::rules::language::RuleData> {
    sock.list_rules(Duration::from_secs(3))
        .unwrap()
        .iter()
        .map(|b| pauditd_engine::rules::language::RuleData::from_bytes(b).unwrap())
        .collect()
}

/// For each rule: load it with auditctl and compare the kernel's copy with our encoding; then
/// load our encoding over netlink instead and compare `auditctl -l`. Returns (matched,
/// refused by auditctl here, not supported by us yet).
fn compare_with_auditctl(rules: &[String]) -> (usize, usize, Vec<String>) {
    use pauditd_engine::netlink::AUDIT_ADD_RULE;
    use pauditd_engine::netlink::{AuditSocket, Mode};
    use pauditd_engine::rules::language;
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
        let ours = match language::parse(&args) {
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
        if f.path().extension().is_none_or(|x| x != "rules") {
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
    use pauditd_engine::rules::language::render;
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
