use super::auditctl::auditctl_load;
use super::language::{self, Control, RuleData, RuleLine};
use super::plan::LISTS;
use super::*;
use crate::netlink::AuditStatus;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A stand-in auditctl (a real executable) that records each invocation's argv, one
/// argument per line, so we see exactly what reached it.
fn recorder(dir: &Path) -> (PathBuf, PathBuf) {
    let log = dir.join("argv.log");
    let exe = dir.join("auditctl");
    std::fs::write(
        &exe,
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\" >> {}; done\necho -- >> {}\n",
            log.display(),
            log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    (exe, log)
}

fn src(lines: &[&str]) -> Vec<RuleSource> {
    sources(
        &lines.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        &[],
    )
    .unwrap()
}

fn rule(s: &str) -> RuleData {
    language::parse(&s.split_whitespace().collect::<Vec<_>>())
        .unwrap()
        .as_listed()
}

#[test]
fn rules_reach_auditctl_as_argument_vectors_never_through_a_shell() {
    let dir = std::env::temp_dir().join(format!("pauditd-rules-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (exe, log) = recorder(&dir);
    let pwned = dir.join("pwned");
    let rules = src(&[
        "-a exit,always  -S execve\t-k exec",
        &format!(
            "-w /etc/passwd;touch {} -k $(touch {})",
            pwned.display(),
            pwned.display()
        ),
    ]);
    assert_eq!(auditctl_load(&exe, &rules).unwrap(), (2, Vec::new()));
    let argv = std::fs::read_to_string(&log).unwrap();
    let p = pwned.display();
    assert_eq!(
        argv,
        format!(
            "-D\n--\n-a\nexit,always\n-S\nexecve\n-k\nexec\n--\n-w\n/etc/passwd;touch\n{p}\n-k\n$(touch\n{p})\n--\n"
        )
    );
    assert!(!pwned.exists(), "a shell ran the rule");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// With the auditctl loader each line is its own auditctl run, so -i/-c is carried by
/// us: after it a line auditctl refuses is skipped and listed; before it, fatal.
#[test]
fn through_auditctl_a_failing_line_after_i_is_skipped_and_before_it_fatal() {
    let dir = std::env::temp_dir().join(format!("pauditd-rules-i-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let exe = dir.join("auditctl");
    // A stand-in auditctl that refuses any line naming `bad`, as auditctl would.
    std::fs::write(
        &exe,
        "#!/bin/sh\nfor a in \"$@\"; do case $a in *bad*) echo \"Unknown user: $a\" >&2; exit 1;; esac; done\n",
    )
    .unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (added, skipped) = auditctl_load(
        &exe,
        &src(&[
            "-i",
            "-a always,exit -F uid=bad",
            "-a always,exit -S execve",
        ]),
    )
    .unwrap();
    assert_eq!(added, 2);
    assert_eq!(
        skipped,
        vec!["rule #2: -a always,exit -F uid=bad: Unknown user: uid=bad"]
    );
    let e = auditctl_load(
        &exe,
        &src(&[
            "-a always,exit -F uid=bad",
            "-i",
            "-a always,exit -S execve",
        ]),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "failed to add rule #1: Unknown user: uid=bad"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn rules_files_follow_the_yaml_list_in_sorted_order_with_their_line_numbers() {
    let dir = std::env::temp_dir().join(format!("pauditd-rulesd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("20-b.rules"),
        "# comment\n\n-a always,exit -S execve -k b\n",
    )
    .unwrap();
    std::fs::write(dir.join("10-a.rules"), "-D\n-b 8192\n").unwrap();
    std::fs::write(dir.join("ignored.txt"), "-a nonsense\n").unwrap();
    let s = sources(
        &["-a always,exit -S getppid".into(), " ".into()],
        &[format!("{}/*.rules", dir.display())],
    )
    .unwrap();
    let got: Vec<(String, &str)> = s
        .iter()
        .map(|s| (s.origin.clone(), s.text.as_str()))
        .collect();
    let d = dir.display();
    assert_eq!(
        got,
        vec![
            ("rule #1".to_string(), "-a always,exit -S getppid"),
            (format!("{d}/10-a.rules:1"), "-D"),
            (format!("{d}/10-a.rules:2"), "-b 8192"),
            (format!("{d}/20-b.rules:3"), "-a always,exit -S execve -k b"),
        ]
    );
    let missing = sources(&[], &[format!("{d}/none.rules")]).unwrap_err();
    assert!(missing.to_string().contains("none.rules"), "{missing}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// What auditctl -R refuses, and the directories: each kind named with its reason, all
/// of them in one error; a root file in a sticky world-writable directory is fine.
#[test]
fn rules_files_another_user_could_rewrite_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root to chown to another user");
        return;
    }
    let dir = std::env::temp_dir().join(format!("pauditd-rulesafe-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let ok = dir.join("ok");
    let open = dir.join("open");
    let sticky = dir.join("sticky");
    for d in [&ok, &open, &sticky] {
        std::fs::create_dir_all(d).unwrap();
    }
    let chmod =
        |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    chmod(&dir, 0o755);
    chmod(&ok, 0o755);
    chmod(&open, 0o777);
    chmod(&sticky, 0o1777);
    for f in [
        ok.join("10-a.rules"),
        ok.join("20-w.rules"),
        ok.join("30-u.rules"),
        open.join("x.rules"),
        sticky.join("s.rules"),
    ] {
        std::fs::write(&f, "-a always,exit -S execve\n").unwrap();
        chmod(&f, 0o644);
    }
    chmod(&ok.join("20-w.rules"), 0o666);
    std::os::unix::fs::chown(ok.join("30-u.rules"), Some(65534), None).unwrap();
    let files = [
        format!("{}/*.rules", ok.display()),
        format!("{}/x.rules", open.display()),
        format!("{}/s.rules", sticky.display()),
    ];
    let e = sources(&[], &files).unwrap_err().to_string();
    for want in [
        "20-w.rules is writable by everyone (mode 0666)",
        "30-u.rules is owned by uid 65534",
        &format!(
            "x.rules is in {}, which anyone may write (mode 0777, no sticky bit)",
            open.display()
        ),
    ] {
        assert!(e.contains(want), "{want:?} not in {e}");
    }
    assert!(!e.contains("10-a.rules") && !e.contains("s.rules"), "{e}");
    // Group-writable and a symlink to a user's file are refused too.
    chmod(&ok.join("20-w.rules"), 0o664);
    std::fs::remove_file(ok.join("30-u.rules")).unwrap();
    let e = sources(&[], &files[..1]).unwrap_err().to_string();
    assert!(
        e.contains("20-w.rules is writable by its group (mode 0664)"),
        "{e}"
    );
    chmod(&ok.join("20-w.rules"), 0o644);
    let theirs = open.join("theirs.rules");
    std::fs::write(&theirs, "-e 0\n").unwrap();
    std::os::unix::fs::chown(&theirs, Some(65534), None).unwrap();
    std::os::unix::fs::symlink(&theirs, ok.join("40-link.rules")).unwrap();
    let e = sources(&[], &files[..1]).unwrap_err().to_string();
    assert!(e.contains("40-link.rules is owned by uid 65534"), "{e}");
    std::fs::remove_file(ok.join("40-link.rules")).unwrap();
    // What is left is safe: read.
    assert_eq!(sources(&[], &files[..1]).unwrap().len(), 2);
    assert_eq!(sources(&[], &files[2..]).unwrap().len(), 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_plan_simulates_the_lines_as_auditctl_would_apply_them() {
    let p = plan(&src(&[
        "-a always,exit -F arch=b64 -S execve -k one",
        "-w /etc/passwd -p wa -k pw",
        "-D",
        "-b 8192",
        "-a always,exit -F arch=b64 -S execve -k two",
        "-a never,exclude -F msgtype=CWD",
        "-A never,exit -F pid=1",
        "-w /etc/shadow -p wa",
        "-W /etc/shadow -p wa",
        "-e 1",
    ]))
    .unwrap();
    let texts: Vec<&str> = p.rules.iter().map(|r| r.text.as_str()).collect();
    // The exit list in order (-A first), then the exclude list: the kernel's order.
    assert_eq!(
        texts,
        vec![
            "-A never,exit -F pid=1",
            "-a always,exit -F arch=b64 -S execve -k two",
            "-a never,exclude -F msgtype=CWD",
        ]
    );
    assert_eq!(
        p.status,
        vec![("rule #4".into(), language::STATUS_BACKLOG_LIMIT, 8192)]
    );
    assert_eq!(p.enable, Some(("rule #10".into(), 1)));
}

#[test]
fn every_invalid_line_is_reported_at_once_with_its_origin() {
    let e = plan(&src(&[
        "-a always,exit -S no_such_call",
        "-a always,exit -S execve -k dup",
        "-a always,exit -S execve -k dup",
        "-W /not/watched",
        "-a always,exit -F bogus=1",
    ]))
    .unwrap_err();
    let text = e.to_string();
    assert!(text.starts_with("4 rule line(s) are invalid"), "{text}");
    assert!(text.contains("rule #1: -a always,exit -S no_such_call: -S \"no_such_call\": no such syscall on x86_64") || cfg!(not(target_arch = "x86_64")), "{text}");
    assert!(text.contains("rule #3: -a always,exit -S execve -k dup: the same rule as rule #2 (the kernel refuses a duplicate: EEXIST)"), "{text}");
    assert!(
        text.contains("rule #4: -W /not/watched: no such rule to delete (ENOENT)"),
        "{text}"
    );
    assert!(
        text.contains("rule #5: -a always,exit -F bogus=1: -F \"bogus\": unknown field"),
        "{text}"
    );
    // After -c the same problems are skipped, not fatal.
    let p = plan(&src(&[
        "-c",
        "-a always,exit -S execve -k dup",
        "-a always,exit -S execve -k dup",
        "-W /not/watched",
    ]))
    .unwrap();
    assert_eq!(p.rules.len(), 1);
    assert!(p.rules[0].tolerant);
    assert_eq!(p.skipped.len(), 2, "{:?}", p.skipped);
}

/// auditctl's -i and -c: from that line on, a line auditctl would refuse (one that does
/// not parse, a duplicate, a deletion of nothing) is skipped and listed, not fatal; lines
/// before it stay fatal. The lines are the shapes public rule sets carry.
#[test]
fn after_i_or_c_a_line_auditctl_would_skip_is_skipped_and_listed() {
    for opt in ["-i", "-c"] {
        let p = plan(&src(&[
            "-D",
            "-b 8192",
            opt,
            "-a always,exit -F arch=b64 -S adjtimex -F auid=-1 -F uid=no-such-user-pauditd -k time",
            "-a always,exit -F path=/usr/bin/setfiles -F perm=x -F auid>=500 -k -F T1078",
            "-a always,exit -F arch=b64 -S connect -F dir=+ -F obj=/opt/x -F key=net",
            "-e 7",
            "-a always,exit -F arch=b64 -S execve -k kept",
        ]))
        .unwrap();
        let texts: Vec<&str> = p.rules.iter().map(|r| r.text.as_str()).collect();
        assert_eq!(texts, vec!["-a always,exit -F arch=b64 -S execve -k kept"]);
        assert_eq!(p.status.len(), 1, "-b is kept");
        assert_eq!(p.enable, None, "the bad -e is skipped");
        let origins: Vec<&str> = p
            .skipped
            .iter()
            .map(|s| s.split(':').next().unwrap())
            .collect();
        assert_eq!(origins, vec!["rule #4", "rule #5", "rule #6", "rule #7"]);
        assert!(p.skipped[0].ends_with(
            "-F uid: \"no-such-user-pauditd\" is not a number, `unset` or a known name"
        ));
        assert!(
            p.skipped[2].ends_with("-F \"obj\": unknown field"),
            "{}",
            p.skipped[2]
        );
    }
    // Before -i a bad line is fatal (auditctl -R stops there too), after it not.
    let e = plan(&src(&[
        "-a always,exit -F obj=/x -S execve",
        "-i",
        "-a always,exit -F obj=/y -S execve",
    ]))
    .unwrap_err();
    let RuleError::Invalid(lines) = e else {
        panic!("{e}")
    };
    assert_eq!(lines.len(), 1);
    assert!(lines[0].starts_with("rule #1: "), "{lines:?}");
}

/// A tiny deterministic generator for the equivalence tests.
struct Lcg(u64);
impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// The plan (hash-indexed, linear) against the obvious quadratic simulation, over
/// thousands of random lines of -a, -A, -d, -W, -w, -D on several lists.
#[test]
fn the_linear_plan_is_the_straightforward_simulation() {
    let mut g = Lcg(7);
    for round in 0..20 {
        let mut lines = vec!["-c".to_string()];
        for _ in 0..400 {
            let n = g.below(40);
            let line = match g.below(20) {
                0 => "-D".to_string(),
                1..=7 => format!("-a always,exit -F arch=b64 -S execve -F uid={n}"),
                8..=10 => format!("-A always,exit -F arch=b64 -S execve -F uid={n}"),
                11..=13 => format!("-d always,exit -F arch=b64 -S execve -F uid={n}"),
                14 => format!("-a never,exclude -F msgtype={}", 1300 + n),
                15 => format!("-A never,exclude -F msgtype={}", 1300 + n),
                16 => format!("-w /pauditd-test/{n} -p wa"),
                17 => format!("-W /pauditd-test/{n} -p wa"),
                _ => format!("-a always,user -F uid={n}"),
            };
            lines.push(line);
        }
        let s = src(&lines.iter().map(String::as_str).collect::<Vec<_>>());
        let p = plan(&s).unwrap();
        // The reference: one Vec per list, linear searches.
        let mut lists: Vec<Vec<(usize, RuleData)>> = vec![Vec::new(); LISTS];
        let mut skipped = 0;
        for (n, src) in s.iter().enumerate() {
            match language::parse_line(&src.args()).unwrap().unwrap() {
                RuleLine::Control(Control::DeleteAll) => lists.iter_mut().for_each(Vec::clear),
                RuleLine::Control(_) => {}
                RuleLine::Add(d) => {
                    let r = d.as_listed();
                    let l = &mut lists[(r.flags % 8) as usize];
                    if l.iter().any(|x| x.1 == r) {
                        skipped += 1;
                    } else if d.flags & language::FILTER_PREPEND != 0 {
                        l.insert(0, (n, r));
                    } else {
                        l.push((n, r));
                    }
                }
                RuleLine::Delete(r) => {
                    let l = &mut lists[(r.flags % 8) as usize];
                    match l.iter().position(|x| x.1 == r) {
                        Some(i) => {
                            l.remove(i);
                        }
                        None => skipped += 1,
                    }
                }
            }
        }
        let want: Vec<String> = lists
            .into_iter()
            .flatten()
            .map(|(n, _)| s[n].origin.clone())
            .collect();
        let got: Vec<String> = p.rules.iter().map(|r| r.origin.clone()).collect();
        assert_eq!(got, want, "round {round}");
        assert_eq!(p.skipped.len(), skipped, "round {round}");
    }
}

/// The linear diff gives steps that turn any kernel list into any desired one, touching
/// no rule both keep unless its order needs it.
#[test]
fn the_linear_diff_reaches_the_desired_list_from_random_ones() {
    let mut g = Lcg(11);
    let pool: Vec<RuleData> = (0..30)
        .map(|n| {
            if n % 5 == 0 {
                rule(&format!("-a never,exclude -F msgtype={}", 1300 + n))
            } else {
                rule(&format!("-a always,exit -F arch=b64 -S execve -F uid={n}"))
            }
        })
        .collect();
    let pick = |g: &mut Lcg| -> Vec<RuleData> {
        let mut v: Vec<RuleData> = Vec::new();
        for _ in 0..g.below(25) {
            let r = &pool[g.below(pool.len() as u64) as usize];
            if !v.contains(r) {
                v.push(r.clone());
            }
        }
        // The kernel's listing order: by list.
        v.sort_by_key(|r| r.flags % 8);
        v
    };
    for _ in 0..500 {
        let (kernel, desired) = (pick(&mut g), pick(&mut g));
        let c = plan_changes(&kernel, &desired);
        assert_eq!(run_steps(&kernel, &desired, &c.steps), desired);
        let deleted_kept = c
            .steps
            .iter()
            .filter(|s| matches!(s, Step::Delete(r) if desired.contains(&**r)))
            .count();
        assert_eq!(deleted_kept, c.readded);
    }
}

/// The decision a locked kernel (`enabled 2`) leads to, from the status alone: nothing
/// applied, no setting sent; otherwise everything the plan asks.
#[test]
fn a_locked_kernel_gets_no_changes_and_an_unlocked_one_everything() {
    let p = plan(&src(&[
        "-b 8192",
        "-a always,exit -F arch=b64 -S execve",
        "--loginuid-immutable",
        "-e 2",
    ]))
    .unwrap();
    let status = |enabled| AuditStatus {
        enabled,
        ..AuditStatus::default()
    };
    assert_eq!(
        decide(&status(2), &p),
        Decision {
            locked: true,
            settings: false,
            rules: false,
            enable: None,
            loginuid_immutable: false
        }
    );
    for enabled in [0, 1] {
        assert_eq!(
            decide(&status(enabled), &p),
            Decision {
                locked: false,
                settings: true,
                rules: true,
                enable: Some(2),
                loginuid_immutable: true
            }
        );
    }
}

#[test]
fn drift_names_what_is_missing_and_what_is_unexpected() {
    let (a, b, c) = (
        rule("-a always,exit -F arch=b64 -S execve -k a"),
        rule("-a always,exit -F arch=b64 -S getppid -k b"),
        rule("-w /etc/passwd -p wa -k c"),
    );
    assert_eq!(
        drift(&[a.clone(), b.clone()], &[a.clone(), b.clone()]),
        None
    );
    let d = drift(&[a.clone(), b.clone()], &[a.clone(), c.clone()]).unwrap();
    assert_eq!(
        d.missing,
        vec!["-a always,exit -F arch=b64 -S getppid -F key=b"]
    );
    assert_eq!(d.extra, vec!["-w /etc/passwd -p wa -k c"]);
    assert_eq!(
        d.to_string(),
        "1 rule(s) missing, 1 unexpected; missing: -a always,exit -F arch=b64 -S getppid -F key=b; unexpected: -w /etc/passwd -p wa -k c"
    );
    // The same rules in another order: a difference with nothing missing.
    let d = drift(&[a.clone(), b.clone()], &[b, a]).unwrap();
    assert!(d.missing.is_empty() && d.extra.is_empty());
}

/// The kernel's behaviour for a list of steps: add at either end, delete by equality.
fn run_steps(kernel: &[RuleData], desired: &[RuleData], steps: &[Step]) -> Vec<RuleData> {
    let mut k = kernel.to_vec();
    for s in steps {
        match s {
            Step::Add { index, prepend } => {
                let r = desired[*index].clone();
                assert!(!k.contains(&r), "duplicate add");
                let list = r.flags % 8;
                if *prepend {
                    let at = k
                        .iter()
                        .position(|x| x.flags % 8 == list)
                        .unwrap_or(k.len());
                    k.insert(at, r);
                } else {
                    let at = k
                        .iter()
                        .rposition(|x| x.flags % 8 <= list)
                        .map_or(0, |i| i + 1);
                    k.insert(at, r);
                }
            }
            Step::Delete(r) => {
                let i = k
                    .iter()
                    .position(|x| x == &**r)
                    .expect("delete of a missing rule");
                k.remove(i);
            }
        }
    }
    k
}

#[test]
fn changes_touch_only_what_changed_and_keep_the_order() {
    let r: Vec<RuleData> = [
        "-a always,exit -S execve -k a",
        "-a always,exit -S getppid -k b",
        "-a always,exit -S openat -k c",
        "-a always,exit -S connect -k d",
        "-a never,exclude -F msgtype=CWD",
    ]
    .iter()
    .map(|s| rule(s))
    .collect();
    let (a, b, c, d, x) = (&r[0], &r[1], &r[2], &r[3], &r[4]);
    type Case<'a> = (Vec<&'a RuleData>, Vec<&'a RuleData>, usize, usize, usize);
    let cases: Vec<Case> = vec![
        // (kernel, desired, added, removed, readded)
        (vec![a, b], vec![a, b], 0, 0, 0),
        (vec![a, b], vec![a, b, c], 1, 0, 0),
        (vec![a, b], vec![c, a, b], 1, 0, 0),
        (vec![a, b, c], vec![a, c], 0, 1, 0),
        (vec![a, b, c], vec![a, d, c], 1, 1, 1),
        (vec![a, b], vec![b, a], 0, 0, 1),
        (vec![a, b, c], vec![b, c, a], 0, 0, 1),
        (vec![a, x], vec![d, a, x], 1, 0, 0),
        (vec![], vec![a, b, x], 3, 0, 0),
        (vec![a, b, x], vec![], 0, 3, 0),
        (vec![a, b, c, d], vec![d, c, b, a], 0, 0, 3),
    ];
    for (kernel, desired, added, removed, readded) in cases {
        let kernel: Vec<RuleData> = kernel.into_iter().cloned().collect();
        let desired: Vec<RuleData> = desired.into_iter().cloned().collect();
        let c = plan_changes(&kernel, &desired);
        assert_eq!(
            run_steps(&kernel, &desired, &c.steps),
            desired,
            "{kernel:?} -> {desired:?}"
        );
        assert_eq!(
            (c.added, c.removed, c.readded),
            (added, removed, readded),
            "{c:?}"
        );
        // An unchanged rule is deleted only when it is re-added for order.
        let deleted_kept = c
            .steps
            .iter()
            .filter(|s| matches!(s, Step::Delete(r) if desired.contains(&**r)))
            .count();
        assert_eq!(deleted_kept, readded);
    }
}

#[test]
fn the_drift_guard_checks_on_its_interval_and_at_once_after_a_rule_change() {
    let t0 = std::time::Instant::now();
    let g = DriftGuard::new(DriftPolicy::Reapply, Duration::from_secs(60), t0);
    assert!(!g.due(t0, 0));
    assert!(!g.due(t0 + Duration::from_secs(59), 0));
    assert!(g.due(t0 + Duration::from_secs(60), 0));
    // A CONFIG_CHANGE add/remove record: at once.
    assert!(g.due(t0 + Duration::from_secs(1), 1));
    assert_eq!(g.next_deadline(), t0 + Duration::from_secs(60));
}
