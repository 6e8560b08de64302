//! The enriched and ecs formats on real kernel records: containers, decoded arguments and
//! addresses, lineage.

use crate::harness::*;

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
