//! Load generator for the kernel tests and `scripts/loadbench`: issues a cheap syscall
//! (`getppid`) a given number of times, optionally at a given rate. Audit it with an
//! exe-filtered rule: `-a exit,always -F arch=b64 -S getppid -F exe=/path/to/pauditd-loadgen`.

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
}

fn main() {
    let a = Args::parse();
    let count = if a.count > 0 {
        a.count
    } else {
        (a.rate as f64 * a.seconds) as u64
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
                getppid();
                done += 1;
            }
        } else {
            getppid();
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
