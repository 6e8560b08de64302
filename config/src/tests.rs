use super::*;

const UPSTREAM: &str = include_str!("../../tests/data/pauditd-upstream-example.yaml");

fn errors(text: &str) -> Vec<String> {
    match Config::from_str(text) {
        Err(ConfigError::Invalid(errs)) => errs.into_iter().map(|e| e.to_string()).collect(),
        Err(other) => vec![other.to_string()],
        Ok(_) => vec![],
    }
}

#[test]
fn defaults_are_pauditds() {
    let c = Config::default();
    assert_eq!((c.events_min, c.events_max), (1300, 1399));
    assert_eq!(c.receive_buffer, None);
    assert_eq!(
        c.message_tracking,
        MessageTracking {
            enabled: true,
            log_out_of_order: false,
            max_out_of_order: 500
        }
    );
    assert_eq!(c.output.syslog.network, "unixgram");
    assert_eq!(c.output.syslog.address, "/dev/log");
    assert_eq!(c.output.syslog.priority, 132);
    assert_eq!(c.output.syslog.tag, "pauditd");
    assert_eq!(c.output.http.worker_count, 10);
    assert_eq!(c.output.http.buffer_size, 100);
    assert_eq!(c.output.http.breaker_failure_ratio, 0.05);
    assert_eq!(c.output.http.idle_conn_timeout, Duration::from_secs(10));
    assert_eq!(c.output.http.response_body_transformer, "noop");
    assert_eq!(c.metrics.address, ":8125");
    assert_eq!(c.metrics.sample_rate, 0.5);
    assert!(!c.metrics.enabled);
    assert!(!c.parser.enable_uid_caching);
    assert_eq!(c.parser.password_file_path, "/etc/passwd");
    assert_eq!(c.event_timeout, Duration::from_secs(2));
    assert!(c.output.enabled_names().is_empty());
    assert_eq!(c.netlink_mode, NetlinkMode::Unicast);
    assert_eq!(c.engine.receiver_core, None);
    assert_eq!(c.engine.ring_size, 8 << 20);
    assert_eq!(c.engine.io_uring, IoUring::Auto);
}

#[test]
fn multicast_needs_no_rules_and_bad_mode_is_refused() {
    let c =
        Config::from_str("netlink: { mode: multicast }\nengine: { receiver_core: -1 }").unwrap();
    assert_eq!(c.netlink_mode, NetlinkMode::Multicast);
    assert_eq!(c.engine.receiver_core, Some(-1));
    assert!(c.daemon_errors().is_empty());
    assert_eq!(
        errors("netlink: { mode: broadcast }"),
        vec!["netlink.mode: \"broadcast\" is not one of unicast, multicast"]
    );
    let c = Config::from_str("engine: { io_uring: off }").unwrap();
    assert_eq!(c.engine.io_uring, IoUring::Off);
    assert_eq!(
        errors("engine: { io_uring: maybe }"),
        vec!["engine.io_uring: \"maybe\" is not one of auto, on, off"]
    );
}

#[test]
fn pauditds_example_loads() {
    let c = Config::from_str(UPSTREAM).unwrap();
    assert_eq!(c.receive_buffer, Some(16384));
    assert_eq!(c.output.enabled_names(), vec!["stdout"]);
    assert_eq!(c.output.stdout.attempts, 2);
    assert_eq!(c.output.http.buffer_size, 1000);
    assert_eq!(
        c.output.http.trace_header_name.as_deref(),
        Some("X-TRACE-ID")
    );
    assert!(c.output.http.ssl.enabled);
    assert_eq!(c.output.syslog.priority, 129);
    assert_eq!(c.output.syslog.tag, "audit-thing");
    assert_eq!(c.output.file.mode, 0o600, "0600 is octal, as in Go");
    assert_eq!(c.output.file.user.as_deref(), Some("root"));
    assert!(c.metrics.enabled);
    assert_eq!(c.rules.len(), 4);
    assert_eq!(
        c.filters,
        vec![
            Filter {
                syscall: "49".into(),
                message_type: 1306,
                key: String::new(),
                regex: "saddr=(10..|0A..)".into(),
                action: FilterAction::Drop
            },
            Filter {
                syscall: String::new(),
                message_type: 0,
                key: "passwd-write-log".into(),
                regex: r#""uid_map":\{"0":"root"\}"#.into(),
                action: FilterAction::Drop
            },
        ]
    );
    assert_eq!(
        c.warnings,
        vec!["unknown key `notification-service-transformer` (ignored)".to_string()]
    );
    assert!(c.daemon_errors().is_empty());
}

#[test]
fn upstream_original_forms_are_not_yaml() {
    // The two things in pauditd's example that no YAML parser (pauditd's included) accepts.
    let with_slashes = UPSTREAM.replace(
        "# (upstream: `//` comments here)",
        "// This allows\n// more",
    );
    assert!(matches!(
        Config::from_str(&with_slashes),
        Err(ConfigError::Yaml(_))
    ));
    let unquoted = UPSTREAM.replace(
        r#"regex: '"uid_map":{"0":"root"}'"#,
        r#"regex: "uid_map":{"0":"root"}"#,
    );
    assert!(matches!(
        Config::from_str(&unquoted),
        Err(ConfigError::Yaml(_))
    ));
}

#[test]
fn every_error_is_reported_with_its_path() {
    let errs = errors(
        r#"
events: { min: 1400, max: 1300 }
socket_buffer: { receive: lots }
output:
  file: { enabled: true, mode: 0 }
  syslog: { network: carrier-pigeon, priority: 400 }
  http: { enabled: true, worker_count: 20, buffer_size: 5, response_body_transformer: xml, idle_conn_timeout: 10, ssl: { enabled: true } }
metrics: { sample_rate: 2 }
message_tracking: { enabled: maybe }
filters:
  - { key: k, regex: "(" }
  - { syscall: 1, message_type: 1300 }
  - { regex: x }
  - { key: k, regex: x, action: explode }
  - 42
"#,
    );
    let expect = [
        "events.min: 1400 is greater than events.max 1300",
        "socket_buffer.receive: must be an integer, got \"lots\"",
        "output.file.mode: 0 is out of range",
        "output.file.path: must be set",
        "output.syslog.priority: 400 is out of range",
        "output.syslog.network: \"carrier-pigeon\" is not one of",
        "output.http.url: output http URL must be set",
        "output.http.buffer_size: 5 must be at least worker_count (20)",
        "output.http.response_body_transformer: \"xml\" is not one of",
        "output.http.idle_conn_timeout: must be a duration with a unit",
        "output.http.ssl.client_cert: SSL is enabled",
        "metrics.sample_rate: 2 is not in (0, 1]",
        "message_tracking.enabled: must be true or false",
        "filters[0].regex: \"(\" does not compile",
        "filters[1].regex: is missing",
        "filters[2]: needs either `key`, or `syscall` and `message_type`",
        "filters[3].action: \"explode\" must be keep or drop",
        "filters[4]: must be a mapping, got 42",
    ];
    for e in expect {
        assert!(
            errs.iter().any(|got| got.starts_with(e)),
            "missing {e:?} in {errs:#?}"
        );
    }
    assert_eq!(errs.len(), expect.len() + 2, "{errs:#?}"); // + client_key, ca_cert
}

#[test]
fn lenient_like_viper() {
    let c = Config::from_str(
        "output:\n  stdout: { enabled: \"true\", attempts: \"3\" }\n  file: { mode: \"0640\" }\nevents: { max: \"1320\" }\n",
    )
    .unwrap();
    assert!(c.output.stdout.enabled);
    assert_eq!(c.output.stdout.attempts, 3);
    assert_eq!(c.output.file.mode, 0o640);
    assert_eq!(c.events_max, 1320);
}

#[test]
fn unknown_keys_warn_with_path() {
    let c =
        Config::from_str("output:\n  stdout: { enabled: true, colour: blue }\nbogus: 1\n").unwrap();
    assert_eq!(
        c.warnings,
        vec![
            "unknown key `output.stdout.colour` (ignored)".to_string(),
            "unknown key `bogus` (ignored)".to_string()
        ]
    );
}

#[test]
fn no_rules_is_a_daemon_error() {
    let c = Config::from_str("rules: []").unwrap();
    assert_eq!(c.daemon_errors()[0].path, "rules");
}

#[test]
fn garbage_documents_are_errors() {
    assert!(Config::from_str("- a\n- b").is_err());
    assert!(Config::from_str("\u{0}\u{1}").is_err());
    assert!(Config::from_str("a: [unclosed").is_err());
    assert!(Config::from_str("").is_ok());
}

#[test]
fn extra_attributes_under_http_or_pauditds_own_key() {
    let c = Config::from_str(
        "output:\n  notification-service-transformer:\n    extra_attributes: { env: prod, dc: 1 }\n  http:\n    notification_service_transformer:\n      extra_attributes: { env: stage }\n",
    )
    .unwrap();
    assert_eq!(
        c.output.http.extra_attributes,
        vec![("env".into(), "stage".into()), ("dc".into(), "1".into())]
    );
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn tls_verification_cannot_be_switched_off() {
    for key in [
        "insecure_skip_verify: true",
        "verify: false",
        "insecure: true",
    ] {
        let errs = errors(&format!(
            "output:\n  http: {{ enabled: true, url: 'https://x', ssl: {{ {key} }} }}"
        ));
        let name = key.split(':').next().unwrap();
        assert_eq!(
            errs,
            vec![format!(
                "output.http.ssl.{name}: TLS server verification cannot be disabled; give the server's CA in ca_cert"
            )],
            "{key}"
        );
    }
}

#[test]
fn privileges_user_and_group() {
    let c = Config::from_str("privileges: { user: nobody, group: nogroup }").unwrap();
    assert_eq!(c.privileges.user.as_deref(), Some("nobody"));
    assert_eq!(c.privileges.group.as_deref(), Some("nogroup"));
    assert_eq!(Config::default().privileges, Privileges::default());
    assert_eq!(
        errors("privileges: { group: nogroup }"),
        vec!["privileges.group: a group without privileges.user has no effect"]
    );
}

#[test]
fn a_config_file_others_can_write_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("pauditd-config-perm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("pauditd.yaml");
    std::fs::write(&path, "rules: ['-e 1']\n").unwrap();
    for (mode, ok, who) in [
        (0o600, true, ""),
        (0o644, true, ""),
        (0o664, false, "its group (mode 0664)"),
        (0o646, false, "everyone (mode 0646)"),
    ] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        match Config::load(&path) {
            Ok(_) => assert!(ok, "{mode:o} accepted"),
            Err(e) => {
                assert!(!ok, "{mode:o} refused: {e}");
                let msg = e.to_string();
                assert!(
                    msg.starts_with(&format!(
                        "refusing config file {}: it is writable by {who}",
                        path.display()
                    )),
                    "{msg}"
                );
                assert!(msg.contains("chmod go-w"), "{msg}");
            }
        }
    }
    // Owned by someone who is neither root nor us (only root can arrange that here).
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::chown(&path, Some(65534), None).unwrap();
        let msg = Config::load(&path).unwrap_err().to_string();
        assert!(
            msg.contains("is owned by uid 65534, neither root nor"),
            "{msg}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn rule_policy_defaults_and_bad_values() {
    let c = Config::from_str("rules: ['-e 1']").unwrap();
    assert!(c.rule_policy.native, "native is the default loader");
    assert_eq!(c.rule_policy.drift, RulesDrift::Reapply);
    assert_eq!(c.rule_policy.check_interval, Duration::from_secs(60));
    assert!(!c.rule_policy.exclude_self);
    assert!(c.rule_policy.files.is_empty());
    let c = Config::from_str(
        "rules_loader: auditctl\nrules_files: [/etc/audit/rules.d/*.rules]\nrules_drift: log\nrules_check_interval: 5s\nrules_exclude_self: true",
    )
    .unwrap();
    assert!(!c.rule_policy.native);
    assert_eq!(c.rule_policy.files, vec!["/etc/audit/rules.d/*.rules"]);
    assert_eq!(c.rule_policy.drift, RulesDrift::Log);
    assert_eq!(c.rule_policy.check_interval, Duration::from_secs(5));
    assert!(c.rule_policy.exclude_self);
    // rules_files alone is enough for the daemon.
    assert!(c.daemon_errors().is_empty());
    assert_eq!(
        errors("rules_loader: ausearch\nrules_drift: sometimes\nrules_check_interval: 0s"),
        vec![
            "rules_loader: \"ausearch\" is not one of native, auditctl",
            "rules_drift: \"sometimes\" is not one of reapply, log, off",
            "rules_check_interval: 0s; use rules_drift: off to turn drift checks off",
        ]
    );
}

#[test]
fn event_filters_read_and_every_mistake_named() {
    let c = Config::from_str(
        "event_filters:\n  - {name: a, action: keep, exe: '/usr/bin/*', addr: 10.0.0.0/8, port: 443}\n  - {key: ''}\n",
    )
    .unwrap();
    assert_eq!(c.event_filters.len(), 2);
    assert!(c.event_filters[0].keep);
    assert_eq!(
        c.event_filters[0].addr,
        Some(("10.0.0.0".parse().unwrap(), 8))
    );
    assert_eq!(c.event_filters[1].name, "filter1");
    assert_eq!(c.event_filters[1].key.as_deref(), Some(""));
    assert_eq!(
        errors("event_filters:\n  - {name: a, addr: 10.0.0.0/33}\n  - {name: a, action: maybe, comm: x}\n  - {name: 'b c'}\n"),
        vec![
            "event_filters[0].addr: \"10.0.0.0/33\" is not an IP address or CIDR (10.0.0.0/8, ::1)",
            "event_filters[1].action: \"maybe\" must be keep or drop",
            "event_filters[2].name: \"b c\" must be letters, digits, - or _ (it names a metric)",
            "event_filters[2]: needs at least one of exe, comm, key, syscall, uid, auid, container, unit, addr, port",
        ]
    );
}

#[test]
fn a_non_loopback_prometheus_address_needs_allow_remote() {
    let on = |a: &str, extra: &str| {
        errors(&format!(
            "output: {{ stdout: {{ enabled: true }} }}\nmetrics: {{ prometheus: {{ enabled: true, address: '{a}'{extra} }} }}\n"
        ))
    };
    for a in [
        "127.0.0.1:9469",
        ":9469",
        "localhost:1",
        "[::1]:9469",
        "127.0.0.2:1",
    ] {
        assert_eq!(on(a, ""), Vec::<String>::new(), "{a}");
    }
    for a in [
        "0.0.0.0:9469",
        "10.1.2.3:9469",
        "[::]:9469",
        "metrics.example:9469",
    ] {
        let e = on(a, "");
        assert_eq!(e.len(), 1, "{a}: {e:?}");
        assert!(
            e[0].starts_with("metrics.prometheus.address: ") && e[0].contains("allow_remote: true"),
            "{e:?}"
        );
        assert_eq!(on(a, ", allow_remote: true"), Vec::<String>::new(), "{a}");
    }
    // Disabled: not checked.
    assert!(errors("output: { stdout: { enabled: true } }\nmetrics: { prometheus: { address: '0.0.0.0:1' } }\n").is_empty());
}

#[test]
fn duplicate_keys_are_errors_and_unknown_keys_are_listed() {
    let e = errors(
        "output: { stdout: { enabled: true } }\nstatus: { socket: /a }\nstatus: { socket: /b }\n",
    );
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].contains("duplicate key \"status\""), "{e:?}");
    let e = errors("output:\n  file:\n    path: /a\n    path: /b\n");
    assert!(e[0].contains("duplicate key \"path\""), "{e:?}");
    let c = Config::from_str(
        "output: { stdout: { enabled: true }, http: { insecure_skip_verify: true } }\nstatus: { sockt: /x }\n",
    )
    .unwrap();
    assert_eq!(
        c.unknown_keys,
        vec!["output.http.insecure_skip_verify", "status.sockt"]
    );
}

#[test]
fn every_key_read_is_documented_and_every_documented_key_is_read() {
    let doc = schema::documented();
    let missing: Vec<&str> = doc
        .iter()
        .filter(|k| k.meaning.is_empty())
        .map(|k| k.path.as_str())
        .collect();
    assert!(
        missing.is_empty(),
        "keys without a meaning in schema::MEANINGS: {missing:?}"
    );
    let stale: Vec<&str> = schema::MEANINGS
        .iter()
        .map(|(p, _)| *p)
        .filter(|p| !doc.iter().any(|k| k.path == *p))
        .collect();
    assert!(
        stale.is_empty(),
        "meanings for keys the reader does not read: {stale:?}"
    );
    let d = |p: &str| doc.iter().find(|k| k.path == p).unwrap().default.clone();
    assert_eq!(d("events.min"), "1300");
    assert_eq!(d("output.file.mode"), "0600");
    assert_eq!(
        d("output.<name>.overflow"),
        "stdout: drop, file: drop, syslog: spool, http: spool, kafka: spool"
    );
    assert_eq!(d("output.<name>.attempts"), "3");
    assert_eq!(d("events.timeout"), "2s");
}

/// docs/configuration.md's key table is what the schema generates (`UPDATE_DOCS=1` rewrites
/// it between its markers).
#[test]
fn docs_are_generated() {
    const BEGIN: &str = "<!-- BEGIN GENERATED KEYS: UPDATE_DOCS=1 cargo test -p pauditd-config docs_are_generated -->\n";
    const END: &str = "<!-- END GENERATED KEYS -->\n";
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/configuration.md");
    let have = std::fs::read_to_string(path).unwrap();
    let (head, rest) = have.split_once(BEGIN).expect("the BEGIN marker");
    let (table, tail) = rest.split_once(END).expect("the END marker");
    let want = schema::markdown();
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(path, format!("{head}{BEGIN}{want}{END}{tail}")).unwrap();
        return;
    }
    assert!(
        table == want,
        "docs/configuration.md's key table is stale: UPDATE_DOCS=1 cargo test -p pauditd-config docs_are_generated"
    );
}

#[test]
fn engine_max_delay_default_zero_and_bounds() {
    let c = Config::from_str("rules: ['-e 1']").unwrap();
    assert_eq!(c.engine.max_delay, DEFAULT_MAX_DELAY);
    let c = Config::from_str("engine: { max_delay: 0s }").unwrap();
    assert_eq!(c.engine.max_delay, Duration::ZERO);
    let c = Config::from_str("engine: { max_delay: 20ms }").unwrap();
    assert_eq!(c.engine.max_delay, Duration::from_millis(20));
    assert_eq!(
        errors("engine: { max_delay: 2s }"),
        vec!["engine.max_delay: 2s is more than the largest budget, 1s"]
    );
    assert_eq!(errors("engine: { max_delay: 5 }").len(), 1);
}

#[test]
fn kafka_output_defaults_and_every_bad_value_at_once() {
    let c = Config::from_str(
        "rules: ['-a exit,always -S uname']\noutput:\n  kafka:\n    enabled: true\n    brokers: ['127.0.0.1:9092']\n    topic: audit\n    properties:\n      linger.ms: 5\n",
    )
    .unwrap();
    let k = &c.output.kafka;
    assert_eq!(
        (k.key, k.acks.as_str(), k.compression.as_str()),
        (KafkaKey::Host, "all", "zstd")
    );
    assert_eq!(k.delivery.overflow, Overflow::Spool);
    assert_eq!(k.delivery.spool.dir, "/var/lib/pauditd/spool/kafka");
    assert_eq!(k.properties, vec![("linger.ms".into(), "5".into())]);
    assert_eq!(c.output.enabled_names(), vec!["kafka"]);

    let e = errors(
        "output:\n  kafka:\n    enabled: true\n    brokers: ['nohost', 'h:0', 'h:9092']\n    topic: 'a/b'\n    key: partition\n    acks: 2\n    compression: snappy\n    properties:\n      bootstrap.servers: x:1\n      transactional.id: t\n",
    );
    for want in [
        "output.kafka.brokers[0]: \"nohost\" is not host:port",
        "output.kafka.brokers[1]: \"h:0\" is not host:port",
        "output.kafka.topic: \"a/b\" is not a Kafka topic name",
        "output.kafka.key: \"partition\" is not one of host, none",
        "output.kafka.acks: \"2\" is not one of all, 1, 0",
        "output.kafka.compression: \"snappy\" is not one of none, gzip, lz4, zstd",
        "output.kafka.properties.bootstrap.servers: set by output.kafka.brokers",
        "output.kafka.properties.transactional.id: transactions are not supported",
    ] {
        assert!(
            e.iter().any(|l| l.starts_with(want)),
            "{want:?} not in {e:#?}"
        );
    }
    let e = errors("output:\n  kafka:\n    enabled: true\n");
    assert!(
        e.iter()
            .any(|l| l.starts_with("output.kafka.brokers: list at least one")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|l| l.starts_with("output.kafka.topic: must be set")),
        "{e:?}"
    );
}
