//! The syslog output received by the real rsyslog (Debian's `rsyslog` package, installed by
//! CI): over UDP and over TCP (newline framing), every event arrives whole, with our tag, PID,
//! priority and hostname as rsyslog parses them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// rsyslogd in the foreground with a private config; killed on drop.
struct Rsyslog(Child);

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn rsyslogd() -> Option<PathBuf> {
    ["/usr/sbin/rsyslogd", "/sbin/rsyslogd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

fn start(dir: &Path, udp: u16, tcp: u16) -> Option<Rsyslog> {
    let Some(bin) = rsyslogd() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "rsyslogd must be installed in CI (.ci/run installs it)"
        );
        eprintln!("skipping: rsyslogd not installed (apt-get install rsyslog)");
        return None;
    };
    let conf = dir.join("rsyslog.conf");
    std::fs::write(
        &conf,
        format!(
            r#"global(workDirectory="{d}")
module(load="imudp")
module(load="imtcp")
input(type="imudp" address="127.0.0.1" port="{udp}")
input(type="imtcp" address="127.0.0.1" port="{tcp}")
template(name="fields" type="string" string="%pri%|%hostname%|%programname%|%procid%|%msg:2:$%\n")
*.* action(type="omfile" file="{d}/received.log" template="fields")
"#,
            d = dir.display()
        ),
    )
    .unwrap();
    let child = Command::new(bin)
        .args(["-n", "-f"])
        .arg(&conf)
        .arg("-i")
        .arg(dir.join("rsyslogd.pid"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let r = Rsyslog(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", tcp)).is_err() {
        assert!(
            Instant::now() < deadline,
            "rsyslogd did not start listening"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(r)
}

fn received(dir: &Path, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let lines: Vec<String> = std::fs::read_to_string(dir.join("received.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        if lines.len() >= n || Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn replay(dir: &Path, network: &str, port: u16) -> u32 {
    let cfg = dir.join(format!("{network}.yaml"));
    let mut f = std::fs::File::create(&cfg).unwrap();
    writeln!(f, "output:\n  syslog: {{ enabled: true, network: {network}, address: \"127.0.0.1:{port}\", tag: audit-e2e, priority: 134 }}").unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_pauditd"))
        .args([
            "replay",
            "--passwd",
            "tests/data/passwd",
            "tests/data/edge-cases.log",
        ])
        .arg("--config")
        .arg(&cfg)
        .current_dir(root())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    pid
}

#[test]
fn rsyslog_receives_every_event_over_udp_and_tcp() {
    let dir = std::env::temp_dir().join(format!("pauditd-rsyslog-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (udp, tcp) = (free_port(), free_port());
    let Some(_rsyslog) = start(&dir, udp, tcp) else {
        return;
    };
    let expected = std::fs::read_to_string(root().join("tests/data/edge-cases.json")).unwrap();
    let events: Vec<&str> = expected.lines().collect();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();

    let udp_pid = replay(&dir, "udp", udp);
    let got = received(&dir, events.len());
    let tcp_pid = replay(&dir, "tcp", tcp);
    let all = received(&dir, 2 * events.len());
    assert_eq!(all.len(), 2 * events.len(), "{all:#?}");
    assert_eq!(&all[..events.len()], &got[..]);
    for (i, line) in all.iter().enumerate() {
        let pid = if i < events.len() { udp_pid } else { tcp_pid };
        let want = format!(
            "134|{}|audit-e2e|{pid}|{}",
            host.trim(),
            events[i % events.len()]
        );
        assert_eq!(line, &want);
    }
}
