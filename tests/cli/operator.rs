//! The operator's commands: `check-config` (warnings, key paths, the daemon's checks,
//! strictness), `--version`, `status`, a daemon without a config, the log's format and rate
//! limit, the container examples.

use super::*;

/// A widely used public rule set (tests/data/rules): after its `-i`, the lines auditctl
/// would skip (an unknown user, `-k -F ...`, an unknown field) are warnings that name the
/// line; `--strict` makes them errors. A bad line before `-i` stays an error.
#[test]
fn check_config_warns_of_lines_skipped_after_i_and_strict_refuses_them() {
    let dir = tempdir("skipped");
    let rules = root().join("tests/data/rules/neo23x0-audit.rules");
    let cfg = dir.join("public.yaml");
    std::fs::write(
        &cfg,
        format!(
            "output: {{stdout: {{enabled: true}}}}\nrules_files: ['{}']\n",
            rules.display()
        ),
    )
    .unwrap();
    let o = pauditd().arg("check-config").arg(&cfg).output().unwrap();
    let e = stderr(&o);
    assert!(o.status.success(), "{e}");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("rule line(s) skipped after -c/-i, as auditctl would"),
        "{out}"
    );
    let r = rules.display();
    for line in [
        format!("rules: {r}:487: -a always,exit -F path=/usr/bin/setfiles -F perm=x -F auid>=500 -F auid!=4294967295 -k -F T1078_Valid_Accounts: T1078_Valid_Accounts: not an option auditctl rules take; skipped (-c/-i)"),
        format!("rules: {r}:718: -a always,exit -F arch=b32 -S connect -F dir=+ -F obj=/opt/CrowdStrike/falcon-sensor -F key=crowdstrike_network: -F \"obj\": unknown field; skipped (-c/-i)"),
    ] {
        assert!(e.contains(&line), "{line} missing in {e}");
    }
    let strict = pauditd()
        .args(["check-config", "--strict"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(strict.status.code(), Some(1));
    let e = stderr(&strict);
    assert!(e.contains("invalid config"), "{e}");
    assert!(e.contains(":718: "), "{e}");
    // Before -i the same line is an error.
    std::fs::write(
        &cfg,
        "output: {stdout: {enabled: true}}\nrules:\n  - -a always,exit -F arch=b64 -S connect -F obj=/x\n  - -i\n  - -a always,exit -F arch=b64 -S connect -F obj=/y\n",
    )
    .unwrap();
    let o = pauditd().arg("check-config").arg(&cfg).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("invalid config (1 error): rules: rule #1: -a always,exit -F arch=b64 -S connect -F obj=/x: -F \"obj\": unknown field"),
        "{e}"
    );
    assert!(!e.contains("rule #3"), "{e}");
}

#[test]
fn version_in_both_styles() {
    for flag in ["-version", "--version"] {
        let o = pauditd().arg(flag).output().unwrap();
        assert!(o.status.success());
        assert_eq!(
            String::from_utf8_lossy(&o.stdout).trim(),
            format!("pauditd {}", env!("CARGO_PKG_VERSION"))
        );
    }
}

#[test]
fn check_config_accepts_examples_and_rejects_broken_with_key_paths() {
    let dir = tempdir("check");
    // The shipped example writes to /var/log/pauditd, which the package creates: checked
    // here with that directory moved to a temporary one.
    let example = std::fs::read_to_string(root().join("examples/pauditd.yaml.example"))
        .unwrap()
        .replace("/var/log/pauditd/", &format!("{}/", dir.display()));
    assert!(example.contains(&format!("path: {}/pauditd.log", dir.display())));
    std::fs::write(dir.join("example.yaml"), example).unwrap();
    for cfg in [
        dir.join("example.yaml"),
        root().join("tests/data/pauditd-upstream-example.yaml"),
    ] {
        let o = pauditd()
            .arg("check-config")
            .arg(&cfg)
            .current_dir(root())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}: {}", cfg.display(), stderr(&o));
        assert!(String::from_utf8_lossy(&o.stdout).contains("OK"));
    }
    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        "output:\n  file: { enabled: true, mode: nope }\nrules: []\nfilters:\n  - { key: k }\n",
    )
    .unwrap();
    let o = pauditd().arg("check-config").arg(&bad).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert_eq!(e.lines().count(), 1, "one line: {e}");
    for path in [
        "output.file.mode:",
        "output.file.path:",
        "filters[0].regex:",
    ] {
        assert!(e.contains(path), "{path} missing in {e}");
    }
    let o = pauditd()
        .arg("check-config")
        .arg(dir.join("missing.yaml"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("cannot read config file"));
    // Rules are parsed as the native loader will: every bad line, with its origin.
    let rules_d = dir.join("rules.d");
    std::fs::create_dir_all(&rules_d).unwrap();
    std::fs::write(rules_d.join("10.rules"), "# ok\n-w /etc/passwd -p wa\n-a always,exit -F arch=b64 -S execve -F auid=nosuchuser-pauditd\n").unwrap();
    std::fs::write(
        &bad,
        format!(
            "output: {{stdout: {{enabled: true}}}}\nrules:\n  - -a always,exit -F arch=b64 -S nope\nrules_files: ['{}/*.rules']\n",
            rules_d.display()
        ),
    )
    .unwrap();
    let o = pauditd().arg("check-config").arg(&bad).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("rules: rule #1: -a always,exit -F arch=b64 -S nope: -S \"nope\": no such syscall on x86_64")
            || !cfg!(target_arch = "x86_64"),
        "{e}"
    );
    assert!(
        e.contains(&format!(
            "rules: {}/10.rules:3: -a always,exit -F arch=b64 -S execve -F auid=nosuchuser-pauditd: -F auid: \"nosuchuser-pauditd\" is not a number, `unset` or a known name",
            rules_d.display()
        )),
        "{e}"
    );
    std::fs::write(&bad, "rules: [\"-a exit,always -S execve\"]\n").unwrap();
    let o = pauditd().arg("check-config").arg(&bad).output().unwrap();
    assert!(
        stderr(&o).contains("No outputs were configured"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn daemon_mode_requires_a_config() {
    let o = pauditd().output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("A config file must be provided"));
}

#[test]
fn check_config_runs_the_daemons_checks_refuses_duplicates_and_strict_unknown_keys() {
    let dir = tempdir("check-strict");
    let cfg = |name: &str, body: &str| {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        p
    };
    let ok = "output: { stdout: { enabled: true } }\nrules: ['-w /etc/passwd -p wa']\n";
    // Users and groups the daemon would refuse at start-up.
    let users = cfg(
        "users.yaml",
        &format!("{ok}privileges: {{ user: nosuchuser-pauditd, group: nosuchgroup-pauditd }}\n"),
    );
    let o = pauditd().arg("check-config").arg(&users).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("privileges.user: unknown user \"nosuchuser-pauditd\"")
            && e.contains("privileges.group: unknown group \"nosuchgroup-pauditd\""),
        "{e}"
    );
    let owner = cfg(
        "owner.yaml",
        &format!(
            "rules: ['-w /etc/passwd -p wa']\noutput: {{ file: {{ enabled: true, path: {}/x.log, user: nosuchuser-pauditd }} }}\n",
            dir.display()
        ),
    );
    let o = pauditd().arg("check-config").arg(&owner).output().unwrap();
    assert!(
        stderr(&o).contains("output.file.user: unknown user \"nosuchuser-pauditd\""),
        "{}",
        stderr(&o)
    );
    // The daemon refuses the same config with the config-error status (78), before it
    // touches the kernel (so this runs without root).
    let o = pauditd().arg("-config").arg(&users).output().unwrap();
    assert_eq!(o.status.code(), Some(78), "{}", stderr(&o));
    assert!(stderr(&o).contains("privileges.user: unknown user"));
    // Duplicate keys: an error (YAML keys are unique; the second value would win silently).
    let dup = cfg(
        "dup.yaml",
        &format!("{ok}status: {{ socket: /a }}\nstatus: {{ socket: /b }}\n"),
    );
    let o = pauditd().arg("check-config").arg(&dup).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("duplicate key \"status\""),
        "{}",
        stderr(&o)
    );
    // Unknown keys: a warning, an error with --strict.
    let unknown = cfg("unknown.yaml", &format!("{ok}status: {{ sockt: /a }}\n"));
    let o = pauditd()
        .arg("check-config")
        .arg(&unknown)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("unknown key `status.sockt` (ignored)"));
    let o = pauditd()
        .args(["check-config", "--strict"])
        .arg(&unknown)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("status.sockt: unknown key (--strict)"),
        "{}",
        stderr(&o)
    );
    let o = pauditd()
        .args(["check-config", "--strict"])
        .arg(cfg("ok.yaml", ok))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn status_reads_its_socket_from_config_and_says_when_no_daemon_answers() {
    let dir = tempdir("status-config");
    let sock = dir.join("status.sock");
    let cfg = dir.join("c.yaml");
    std::fs::write(
        &cfg,
        format!(
            "output: {{ stdout: {{ enabled: true }} }}\nstatus: {{ socket: {} }}\n",
            sock.display()
        ),
    )
    .unwrap();
    let o = pauditd()
        .args(["status", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.starts_with("pauditd: no daemon answered: ")
            && err.contains(&sock.display().to_string()),
        "{err}"
    );
    // The kernel's own view, where AUDIT_GET may be asked (root).
    if is_root() {
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(out.starts_with("kernel: audit pid "), "{out}");
    }
    let o = pauditd()
        .args(["status", "--json", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["daemon"].is_null());
    assert!(v["error"].as_str().unwrap().contains("status.sock"));
    if is_root() {
        assert!(v["kernel"]["backlog_limit"].is_u64(), "{v}");
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
                .unwrap_or(false)
        })
        .unwrap_or(false)
}

/// Log lines carry the time, except when stderr is the journal stream systemd announced in
/// `JOURNAL_STREAM` (journald stamps lines itself).
#[test]
fn log_lines_carry_the_time_unless_stderr_is_the_journal() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempdir("logtime");
    let run = |journal: Option<&str>| -> String {
        let errfile = dir.join("stderr.txt");
        let f = std::fs::File::create(&errfile).unwrap();
        let m = f.metadata().unwrap();
        let mut c = pauditd();
        c.args(["replay", "-"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(f);
        match journal {
            Some("this") => {
                c.env("JOURNAL_STREAM", format!("{}:{}", m.dev(), m.ino()));
            }
            Some(other) => {
                c.env("JOURNAL_STREAM", other);
            }
            None => {
                c.env_remove("JOURNAL_STREAM");
            }
        }
        assert!(c.status().unwrap().success());
        std::fs::read_to_string(&errfile).unwrap()
    };
    let stamped = |log: &str| {
        log.lines().all(|l| {
            l.len() > 25
                && l.as_bytes()[4] == b'-'
                && &l[10..11] == "T"
                && l[..24].ends_with('Z')
                && l[24..].starts_with(" INFO: ")
        })
    };
    let log = run(None);
    assert!(log.contains("replay done: "), "{log}");
    assert!(stamped(&log), "{log}");
    // Inherited from a parent whose stderr was the journal, but ours is a file: stamped.
    assert!(stamped(&run(Some("1:2"))));
    let log = run(Some("this"));
    assert!(log.lines().all(|l| l.starts_with("INFO: ")), "{log}");
}

/// The container examples, linted: the DaemonSet has the minimal capabilities, hostPID and
/// hostNetwork, mounts what its ConfigMap's config names; that config passes check-config;
/// the Dockerfile is multi-stage and starts the daemon on the mounted config.
#[test]
fn container_examples_are_consistent_and_their_config_checks() {
    use serde::Deserialize;
    use serde_yaml::Value;
    let text =
        std::fs::read_to_string(root().join("examples/kubernetes/pauditd-daemonset.yaml")).unwrap();
    let docs: Vec<Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect();
    let kind = |k: &str| {
        docs.iter()
            .find(|d| d["kind"].as_str() == Some(k))
            .unwrap_or_else(|| panic!("no {k}"))
    };
    let (cm, ds) = (kind("ConfigMap"), kind("DaemonSet"));
    let spec = &ds["spec"]["template"]["spec"];
    assert_eq!(spec["hostPID"].as_bool(), Some(true));
    assert_eq!(spec["hostNetwork"].as_bool(), Some(true));
    let c = &spec["containers"][0];
    let sc = &c["securityContext"];
    assert_ne!(sc["privileged"].as_bool(), Some(true));
    assert_eq!(sc["capabilities"]["drop"][0].as_str(), Some("ALL"));
    let add: Vec<&str> = sc["capabilities"]["add"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(add, ["AUDIT_CONTROL", "AUDIT_READ"]);
    // Every mount has its volume, and the config's paths live on mounts.
    let mounts: Vec<(&str, &str)> = c["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap(),
                m["mountPath"].as_str().unwrap(),
            )
        })
        .collect();
    let volumes: Vec<&str> = spec["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    for (name, _) in &mounts {
        assert!(volumes.contains(name), "mount {name} has no volume");
    }
    let mounted = |path: &str| mounts.iter().any(|(_, m)| path.starts_with(m));
    let config = cm["data"]["pauditd.yaml"].as_str().unwrap();
    let parsed: Value = serde_yaml::from_str(config).unwrap();
    assert!(mounted(parsed["status"]["socket"].as_str().unwrap()));
    assert!(mounted(
        parsed["output"]["http"]["spool"]["dir"].as_str().unwrap()
    ));
    let args: Vec<&str> = c["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(args, ["-config", "/etc/pauditd/pauditd.yaml"]);
    assert!(mounts.contains(&("config", "/etc/pauditd")));
    // The ConfigMap's config is one the daemon accepts (strictly: no unknown keys).
    let dir = tempdir("daemonset");
    let cfg = dir.join("pauditd.yaml");
    std::fs::write(&cfg, config).unwrap();
    let o = pauditd()
        .args(["check-config", "--strict"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    // The image: multi-stage, the daemon on the config the DaemonSet mounts.
    let docker = std::fs::read_to_string(root().join("examples/Dockerfile")).unwrap();
    let froms = docker.lines().filter(|l| l.starts_with("FROM ")).count();
    assert_eq!(froms, 2, "a build stage and a runtime stage");
    assert!(docker.contains("COPY --from=build /src/target/release/pauditd /usr/bin/pauditd"));
    assert!(docker.contains(r#"CMD ["-config", "/etc/pauditd/pauditd.yaml"]"#));
    let ignore = std::fs::read_to_string(root().join(".dockerignore")).unwrap();
    assert!(
        ignore.lines().any(|l| l == "target"),
        "the build context would hold target/"
    );
}

/// Warnings from one call site are rate-limited, and what was not shown is counted: 15
/// unknown keys give 10 warnings and one line saying 5 more were not shown.
#[test]
fn repeated_warnings_are_rate_limited_with_a_count() {
    let dir = tempdir("ratelimit");
    let mut body = String::from("output: { stdout: { enabled: true } }\n");
    for i in 0..15 {
        body += &format!("unknown_{i}: 1\n");
    }
    let cfg = write_config(&dir, &body);
    let o = run_with_stdin(&["replay", "-", "--config", cfg.to_str().unwrap()], b"");
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert_eq!(err.matches("unknown key `unknown_").count(), 10, "{err}");
    assert!(
        err.contains("5 more line(s) like the last from src/main.rs:"),
        "{err}"
    );
    // --strict still lists every one.
    let o = pauditd()
        .args(["check-config", "--strict"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(stderr(&o).matches(": unknown key (--strict)").count(), 15);
}

/// The Kafka client judges each property (every refused one named by its key), and a value,
/// which may be a secret, is never repeated; nothing connects to the brokers.
#[test]
fn check_config_names_each_kafka_property_the_client_refuses_without_its_value() {
    let dir = tempdir("kafka-props");
    let cfg = write_config(
        &dir,
        "rules: ['-a exit,always -F arch=b64 -S uname']\noutput:\n  kafka:\n    enabled: true\n    brokers: ['127.0.0.1:9']\n    topic: audit\n    properties:\n      no.such.property: hunter2\n      batch.num.messages: s3cr3t-not-a-number\n      sasl.password: fine-but-secret\n",
    );
    let o = pauditd().arg("check-config").arg(&cfg).output().unwrap();
    let e = stderr(&o);
    assert!(!o.status.success(), "{e}");
    assert!(
        e.contains("output.kafka.properties.no.such.property:"),
        "{e}"
    );
    assert!(
        e.contains("output.kafka.properties.batch.num.messages:"),
        "{e}"
    );
    assert!(
        !e.contains("sasl.password"),
        "an accepted property is not reported: {e}"
    );
    for secret in ["hunter2", "s3cr3t", "fine-but-secret"] {
        assert!(!e.contains(secret), "{secret} leaked: {e}");
    }
}
