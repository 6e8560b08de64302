//! Metrics: a real Prometheus scrapes the daemon.

use crate::harness::*;

/// `GET path` on `addr` over plain HTTP/1.1; the body.
pub(crate) fn http_get(addr: &str, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let (head, body) = resp.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

#[test]
fn a_real_prometheus_scrapes_the_daemon_and_reads_its_counts() {
    let Some(_k) = kernel() else { return };
    let Ok(prom_bin) = which("prometheus") else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "the Prometheus test must run in CI (apt-get install prometheus)"
        );
        eprintln!("skipping: no prometheus binary (apt-get install prometheus)");
        return;
    };
    let dir = tempdir("prometheus");
    let (ours, theirs) = (free_port(), free_port());
    let cfg = format!(
        "metrics: {{ prometheus: {{ enabled: true, address: '127.0.0.1:{ours}' }} }}\n{}",
        echo_rules()
    );
    let mut d = Daemon::start(&dir, "prom", &cfg);
    d.wait_ready();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global: {{ scrape_interval: 1s, evaluation_interval: 1s }}\nscrape_configs:\n  - job_name: pauditd\n    static_configs:\n      - targets: ['127.0.0.1:{ours}']\n"
        ),
    )
    .unwrap();
    struct Kill(Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _prom = Kill(
        Command::new(prom_bin)
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{theirs}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let papi = format!("127.0.0.1:{theirs}");
    let query = |q: &str| -> Option<f64> {
        let body = http_get(&papi, &format!("/api/v1/query?query={q}"))?;
        let v: Value = serde_json::from_str(&body).ok()?;
        v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    };
    wait_for("Prometheus to see the target up", 60, || {
        query("up%7Bjob%3D%22pauditd%22%7D") == Some(1.0)
    });
    for i in 0..5 {
        echo(&format!("pauditd-prom-{i}"));
    }
    wait_for("five events in the file", 20, || {
        d.lines()
            .iter()
            .filter(|l| l.contains("pauditd-prom-"))
            .count()
            == 5
    });
    // The daemon's own count, from its /metrics, once it settles.
    let ours_now = || -> Option<f64> {
        let body = http_get(&format!("127.0.0.1:{ours}"), "/metrics")?;
        body.lines()
            .find_map(|l| l.strip_prefix("pauditd_output_events_delivered_total{output=\"file\"} "))
            .and_then(|v| v.parse().ok())
    };
    // Other in-range records (the rule load's CONFIG_CHANGE) may still be arriving: compare
    // fresh readings until they agree.
    let mut written = 0.0;
    wait_for("the daemon's counter to match the file's lines", 20, || {
        let lines = d.lines().len() as f64;
        written = lines;
        ours_now() == Some(lines)
    });
    let q = "pauditd_output_events_delivered_total%7Boutput%3D%22file%22%7D";
    wait_for("Prometheus to read the daemon's count", 30, || {
        let theirs = query(q);
        theirs.is_some() && theirs == ours_now()
    });
    assert!(written >= 5.0);
    // By the book: HELP and TYPE for every family; the kernel's cumulative `lost` a counter;
    // loss reasons as labels; build and process figures.
    let body = http_get(&format!("127.0.0.1:{ours}"), "/metrics").unwrap();
    assert_eq!(
        body.matches("# HELP ").count(),
        body.matches("# TYPE ").count(),
        "{body}"
    );
    for want in [
        "# TYPE pauditd_kernel_lost_total counter\npauditd_kernel_lost_total ",
        "pauditd_output_events_lost_total{output=\"file\",reason=\"queue_full\"} 0\n",
        "pauditd_build_info{version=\"",
        "# TYPE process_resident_memory_bytes gauge\n",
        "# TYPE process_cpu_seconds_total counter\n",
        "# TYPE pauditd_batch_write_duration_seconds histogram\n",
    ] {
        assert!(body.contains(want), "{want} not in\n{body}");
    }
    // Prometheus read the labelled counter too.
    assert_eq!(
        query(
            "pauditd_output_events_lost_total%7Boutput%3D%22file%22%2Creason%3D%22queue_full%22%7D"
        ),
        Some(0.0)
    );
    let (st, log) = d.terminate();
    assert!(st.success(), "{log}");
    assert_released(&log);
}
