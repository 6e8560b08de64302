//! Load generator for the kernel tests and `scripts/loadbench`: issues a cheap syscall
//! (`getppid`) a given number of times, optionally at a given rate. Audit it with an
//! exe-filtered rule: `-a exit,always -F arch=b64 -S getppid -F exe=/path/to/pauditd-loadgen`.
//! `--connect ADDR` (repeatable) first tries one connect(2) to each address (`host:port`,
//! `[v6]:port` or a unix socket path), for the enriched format's SOCKADDR tests.

use std::time::{Duration, Instant};

use clap::Parser;

#[derive(Parser)]
#[command(
    about = "Issue getppid(2) COUNT times, at RATE per second (default: as fast as possible)"
)]
struct Args {
    /// Number of syscalls; 0 with --seconds means rate x seconds.
    #[arg(long, default_value_t = 0)]
    count: u64,
    /// Syscalls per second (0 = unpaced).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Duration when --count is 0.
    #[arg(long, default_value_t = 0.0)]
    seconds: f64,
    /// Try one connect(2) to each (`127.0.0.1:9`, `[::1]:9`, `/path/to/unix.sock`); the
    /// outcome does not matter, the attempt is what is audited.
    #[arg(long)]
    connect: Vec<String>,
    /// Instead of getppid(2), run this program (no arguments) and wait for it, COUNT times:
    /// the `exec` workload of `scripts/loadbench` (`--exec /usr/bin/true` under an execve
    /// rule: SYSCALL, EXECVE, CWD, PATH x2, PROCTITLE per event).
    #[arg(long)]
    exec: Option<std::path::PathBuf>,
}

fn main() {
    let a = Args::parse();
    for addr in &a.connect {
        if addr.starts_with('/') {
            let _ = std::os::unix::net::UnixStream::connect(addr);
        } else if let Ok(sa) = addr.parse::<std::net::SocketAddr>() {
            let _ = std::net::TcpStream::connect_timeout(&sa, Duration::from_millis(200));
        } else {
            eprintln!("--connect {addr:?}: not host:port, [v6]:port or a path");
            std::process::exit(2);
        }
    }
    let count = if a.count > 0 {
        a.count
    } else {
        (a.rate as f64 * a.seconds) as u64
    };
    let op = || match &a.exec {
        None => getppid(),
        Some(p) => {
            if let Err(e) = std::process::Command::new(p).status() {
                eprintln!("--exec {}: {e}", p.display());
                std::process::exit(1);
            }
        }
    };
    let start = Instant::now();
    let mut done = 0u64;
    while done < count {
        if a.rate > 0 {
            // Pace in 1 ms slices: issue what is due, then sleep.
            let due = ((start.elapsed().as_secs_f64() * a.rate as f64) as u64).min(count);
            if done >= due {
                std::thread::sleep(Duration::from_micros(500));
                continue;
            }
            while done < due {
                op();
                done += 1;
            }
        } else {
            op();
            done += 1;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{done} syscalls in {secs:.3} s ({:.0}/s)",
        done as f64 / secs.max(1e-9)
    );
}

fn getppid() {
    // SAFETY: getppid has no arguments and cannot fail; the raw syscall avoids any libc caching.
    unsafe {
        libc::syscall(libc::SYS_getppid);
    }
}
