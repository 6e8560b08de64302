//! SIGHUP and SIGUSR1: filters and outputs reloaded, the file reopened, nothing lost or
//! duplicated by a reload, restart-only sections named, status counts kept.

use crate::harness::*;

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
