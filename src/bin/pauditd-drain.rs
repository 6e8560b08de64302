//! Discard-only audit receiver for `scripts/loadbench`: becomes the audit daemon, drains the
//! netlink socket as fast as one thread can and throws every record away. It is the physical
//! limit the real daemon is compared with (same socket buffer, same kernel, no work per
//! record beyond counting SYSCALL records).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use pauditd_engine::netlink::{self, AuditSocket, Mode};

#[derive(Parser)]
#[command(about = "Become the audit daemon and discard everything (load benchmark baseline)")]
struct Args {
    /// Socket receive buffer in bytes (SO_RCVBUFFORCE), as the daemon's socket_buffer.receive.
    #[arg(long, default_value_t = 8 << 20)]
    receive_buffer: u32,
}

const AUDIT_SYSCALL: u16 = 1300;

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGTERM, stop.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGINT, stop.clone())?;
    let sock = AuditSocket::open(Mode::Unicast)?;
    sock.set_receive_buffer(a.receive_buffer)?;
    let seq = sock.claim(false)?;
    sock.wait_ack(seq, Duration::from_secs(2))?;
    sock.set_receive_timeout(Duration::from_millis(200))?;
    eprintln!("ready: pid {}", std::process::id());
    let mut buf = vec![0u8; 1 << 16];
    let (mut datagrams, mut syscalls, mut enobufs) = (0u64, 0u64, 0u64);
    while !stop.load(Ordering::Relaxed) {
        match sock.recv(&mut buf, false) {
            Ok(n) => {
                datagrams += 1;
                for m in netlink::split(&buf[..n.min(buf.len())]).flatten() {
                    syscalls += u64::from(m.rtype == AUDIT_SYSCALL);
                }
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => enobufs += 1,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let _ = sock.release();
    println!("datagrams={datagrams} syscall_records={syscalls} enobufs={enobufs}");
    Ok(())
}
