//! The `/metrics` server against hostile and slow clients on loopback: a flood without a
//! newline is cut off (memory stays bounded), a trickling client does not hold back another
//! scrape, connections past the limit are closed, and nothing but `GET /metrics` is served.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use pauditd_sinks::prometheus::{Family, Kind, Limits, PrometheusExporter};

fn start(limits: Limits) -> PrometheusExporter {
    let p = PrometheusExporter::start_with("127.0.0.1:0", limits).unwrap();
    p.publish(vec![Family::single(
        "events_emitted",
        Kind::Counter,
        "Events written",
        42,
    )]);
    p
}

/// One request; the whole answer (the server closes every connection after one).
fn get(addr: SocketAddr, request: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    // Only so that a server that never answers fails the test instead of hanging it.
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn scrape(addr: SocketAddr) -> String {
    get(
        addr,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: text/plain\r\n\r\n",
    )
}

fn rss_bytes() -> u64 {
    pauditd_sinks::prometheus::process_stats()
        .unwrap()
        .resident_bytes
}

#[test]
fn a_scrape_gets_help_type_and_the_published_counter() {
    let p = start(Limits::default());
    let r = scrape(p.address);
    assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
    assert!(r.contains("content-type: text/plain; version=0.0.4; charset=utf-8\r\n"));
    assert!(r.contains(
        "# HELP pauditd_events_emitted_total Events written.\n# TYPE pauditd_events_emitted_total counter\npauditd_events_emitted_total 42\n"
    ), "{r}");
    let om = get(
        p.address,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: application/openmetrics-text;version=1.0.0\r\n\r\n",
    );
    assert!(om.contains("application/openmetrics-text") && om.ends_with("# EOF\n"));
    assert!(get(p.address, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").starts_with("HTTP/1.1 404"));
    assert!(get(
        p.address,
        "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
    )
    .starts_with("HTTP/1.1 405"));
}

/// 256 MiB without a newline: the old server read it all into one line (RSS grew by as
/// much). Now the connection is cut after the head limit and the server keeps serving.
#[test]
fn a_flood_without_newline_is_cut_off_and_memory_stays_bounded() {
    let p = start(Limits::default());
    let before = rss_bytes();
    let mut s = TcpStream::connect(p.address).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(b"GET /").unwrap();
    let chunk = vec![b'A'; 1 << 16];
    let mut sent: u64 = 0;
    let mut cut = false;
    while sent < 256 << 20 {
        match s.write(&chunk) {
            Ok(n) => sent += n as u64,
            Err(e) => {
                assert!(
                    matches!(e.kind(), ErrorKind::BrokenPipe | ErrorKind::ConnectionReset),
                    "{e}"
                );
                cut = true;
                break;
            }
        }
    }
    assert!(cut, "the server read {sent} bytes of one request head");
    // Whatever the socket buffers held, far less than the flood went in.
    assert!(sent < 64 << 20, "{sent} bytes accepted before the cut");
    let grown = rss_bytes().saturating_sub(before);
    assert!(grown < 32 << 20, "RSS grew by {grown} bytes");
    assert!(scrape(p.address).contains("pauditd_events_emitted_total 42\n"));
}

/// A client trickling its request a byte at a time (each byte before any read timeout would
/// fire) held the old one-connection-at-a-time server: no other scrape was answered.
#[test]
fn a_trickling_client_does_not_hold_back_another_scrape() {
    let p = start(Limits {
        // Long enough that the trickler is still connected when the scrape is done.
        header_timeout: Duration::from_secs(300),
        connection_timeout: Duration::from_secs(300),
        ..Limits::default()
    });
    let mut slow = TcpStream::connect(p.address).unwrap();
    slow.write_all(b"GET /metr").unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let trickle = {
        let mut slow = slow.try_clone().unwrap();
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if slow.write_all(b"i").is_err() {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            true
        })
    };
    let r = scrape(p.address);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(r.contains("pauditd_events_emitted_total 42\n"), "{r}");
    assert!(
        trickle.join().unwrap(),
        "the trickling connection was closed"
    );
    // Still open: no answer and no end of stream yet.
    slow.set_nonblocking(true).unwrap();
    let mut b = [0u8; 16];
    assert!(matches!(slow.read(&mut b), Err(e) if e.kind() == ErrorKind::WouldBlock));
}

#[test]
fn a_stalled_request_head_is_given_up() {
    let p = start(Limits {
        header_timeout: Duration::from_secs(1),
        ..Limits::default()
    });
    let mut slow = TcpStream::connect(p.address).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\n").unwrap();
    let mut b = Vec::new();
    // The server ends the connection (408 or a plain close); a read error here would be
    // the 60 s safety net, i.e. a server that waits for ever.
    slow.read_to_end(&mut b).unwrap();
    assert!(
        b.is_empty() || b.starts_with(b"HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&b)
    );
}

#[test]
fn connections_past_the_limit_are_closed_at_once() {
    let p = start(Limits {
        max_connections: 2,
        header_timeout: Duration::from_secs(300),
        connection_timeout: Duration::from_secs(300),
        ..Limits::default()
    });
    let mut held: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut s = TcpStream::connect(p.address).unwrap();
            s.write_all(b"GET").unwrap();
            s
        })
        .collect();
    // Wait until both hold a slot: a third connection is then closed without an answer.
    let mut refused = false;
    for _ in 0..600 {
        let mut s = TcpStream::connect(p.address).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        if out.is_empty() {
            refused = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        refused,
        "a third connection was served beside two held ones"
    );
    held.clear();
    // Slots come back once the held connections are gone.
    let mut served = false;
    for _ in 0..600 {
        let mut s = TcpStream::connect(p.address).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        if out.contains("pauditd_events_emitted_total 42\n") {
            served = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(served);
}
