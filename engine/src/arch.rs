//! Machine architectures as the audit subsystem names them (`AUDIT_ARCH_*`), and their
//! syscall names.
//!
//! Owns the mapping between a rule's or a record's `arch` value, the names auditctl accepts
//! for it (`b64`/`b32` meaning this host's two ABIs), and the syscall table of each
//! ([`crate::syscall_table`], generated). It must never guess: an architecture we have no
//! table for still has its number, and its syscalls stay numbers.

use crate::syscall_table as t;

const ARCH_64BIT: u32 = 0x8000_0000;
const ARCH_LE: u32 = 0x4000_0000;

/// An architecture we can name. Its value is the kernel's `AUDIT_ARCH_*` constant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    X86_64,
    I386,
    Aarch64,
    Arm,
    Ppc64le,
    Ppc64,
    Ppc,
    S390x,
    S390,
    Riscv64,
    Riscv32,
}

const ALL: [Arch; 11] = [
    Arch::X86_64,
    Arch::I386,
    Arch::Aarch64,
    Arch::Arm,
    Arch::Ppc64le,
    Arch::Ppc64,
    Arch::Ppc,
    Arch::S390x,
    Arch::S390,
    Arch::Riscv64,
    Arch::Riscv32,
];

impl Arch {
    /// `AUDIT_ARCH_*`: the ELF machine with the 64-bit and little-endian flags.
    pub const fn audit_arch(self) -> u32 {
        match self {
            Arch::X86_64 => 62 | ARCH_64BIT | ARCH_LE,
            Arch::I386 => 3 | ARCH_LE,
            Arch::Aarch64 => 183 | ARCH_64BIT | ARCH_LE,
            Arch::Arm => 40 | ARCH_LE,
            Arch::Ppc64le => 21 | ARCH_64BIT | ARCH_LE,
            Arch::Ppc64 => 21 | ARCH_64BIT,
            Arch::Ppc => 20,
            Arch::S390x => 22 | ARCH_64BIT,
            Arch::S390 => 22,
            Arch::Riscv64 => 243 | ARCH_64BIT | ARCH_LE,
            Arch::Riscv32 => 243 | ARCH_LE,
        }
    }

    pub fn from_audit_arch(v: u32) -> Option<Arch> {
        ALL.into_iter().find(|a| a.audit_arch() == v)
    }

    /// The name ausearch and auditctl `-i` print.
    pub const fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::I386 => "i386",
            Arch::Aarch64 => "aarch64",
            Arch::Arm => "armeb",
            Arch::Ppc64le => "ppc64le",
            Arch::Ppc64 => "ppc64",
            Arch::Ppc => "ppc",
            Arch::S390x => "s390x",
            Arch::S390 => "s390",
            Arch::Riscv64 => "riscv64",
            Arch::Riscv32 => "riscv32",
        }
    }

    /// An architecture by one of the names auditctl's `-F arch=` takes (`b64`/`b32` are this
    /// host's; `None` for b32 where the host has no 32-bit ABI we know).
    pub fn by_name(s: &str) -> Option<Arch> {
        Some(match s {
            "b64" => Arch::host(),
            "b32" => Arch::host_compat()?,
            "i386" | "i486" | "i586" | "i686" => Arch::I386,
            "x86_64" => Arch::X86_64,
            "aarch64" | "armv8l" => Arch::Aarch64,
            "arm" | "armeb" | "armv5tejl" | "armv5tel" | "armv6l" | "armv7l" => Arch::Arm,
            "ppc64le" => Arch::Ppc64le,
            "ppc64" => Arch::Ppc64,
            "ppc" => Arch::Ppc,
            "s390x" => Arch::S390x,
            "s390" => Arch::S390,
            "riscv64" => Arch::Riscv64,
            "riscv32" => Arch::Riscv32,
            _ => return None,
        })
    }

    /// The architecture this program was built for (auditctl's default for a rule).
    pub const fn host() -> Arch {
        if cfg!(target_arch = "aarch64") {
            Arch::Aarch64
        } else if cfg!(target_arch = "arm") {
            Arch::Arm
        } else if cfg!(all(target_arch = "powerpc64", target_endian = "little")) {
            Arch::Ppc64le
        } else if cfg!(target_arch = "powerpc64") {
            Arch::Ppc64
        } else if cfg!(target_arch = "s390x") {
            Arch::S390x
        } else if cfg!(target_arch = "riscv64") {
            Arch::Riscv64
        } else if cfg!(target_arch = "x86") {
            Arch::I386
        } else {
            Arch::X86_64
        }
    }

    /// The host's 32-bit compatibility ABI, if it has one.
    pub const fn host_compat() -> Option<Arch> {
        match Arch::host() {
            Arch::X86_64 => Some(Arch::I386),
            Arch::Aarch64 => Some(Arch::Arm),
            Arch::Ppc64 | Arch::Ppc64le => Some(Arch::Ppc),
            Arch::S390x => Some(Arch::S390),
            Arch::Riscv64 => Some(Arch::Riscv32),
            a => Some(a),
        }
    }

    pub const fn is_64bit(self) -> bool {
        self.audit_arch() & ARCH_64BIT != 0
    }

    /// Syscall names by number; empty where we have no table (s390, riscv32).
    pub const fn syscalls(self) -> &'static [&'static str] {
        match self {
            Arch::X86_64 => t::X86_64,
            Arch::I386 => t::I386,
            Arch::Aarch64 => t::AARCH64,
            Arch::Arm => t::ARM,
            Arch::Ppc64le | Arch::Ppc64 | Arch::Ppc => t::PPC,
            Arch::S390x => t::S390X,
            Arch::Riscv64 => t::RISCV64,
            Arch::S390 | Arch::Riscv32 => &[],
        }
    }

    pub fn syscall_name(self, nr: u32) -> Option<&'static str> {
        table_name(self.syscalls(), nr)
    }

    pub fn syscall_number(self, name: &str) -> Option<u32> {
        table_number(self.syscalls(), name)
    }
}

/// An io_uring operation's name (the `io_uring` filter list's "syscalls").
pub fn uring_op_name(nr: u32) -> Option<&'static str> {
    table_name(t::URING_OPS, nr)
}

pub fn uring_op_number(name: &str) -> Option<u32> {
    table_number(t::URING_OPS, name)
}

fn table_name(table: &'static [&'static str], nr: u32) -> Option<&'static str> {
    table.get(nr as usize).copied().filter(|n| !n.is_empty())
}

fn table_number(table: &[&str], name: &str) -> Option<u32> {
    if name.is_empty() {
        return None;
    }
    table.iter().position(|n| *n == name).map(|i| i as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_arch_values_are_the_kernels() {
        // linux/audit.h
        assert_eq!(Arch::X86_64.audit_arch(), 0xc000_003e);
        assert_eq!(Arch::I386.audit_arch(), 0x4000_0003);
        assert_eq!(Arch::Aarch64.audit_arch(), 0xc000_00b7);
        assert_eq!(Arch::Arm.audit_arch(), 0x4000_0028);
        assert_eq!(Arch::Ppc64le.audit_arch(), 0xc000_0015);
        assert_eq!(Arch::Ppc64.audit_arch(), 0x8000_0015);
        assert_eq!(Arch::S390x.audit_arch(), 0x8000_0016);
        assert_eq!(Arch::Riscv64.audit_arch(), 0xc000_00f3);
        for a in ALL {
            assert_eq!(Arch::from_audit_arch(a.audit_arch()), Some(a));
        }
    }

    #[test]
    fn each_table_names_its_own_numbers() {
        // The same syscall has a different number on each ABI.
        assert_eq!(Arch::X86_64.syscall_number("execve"), Some(59));
        assert_eq!(Arch::I386.syscall_number("execve"), Some(11));
        assert_eq!(Arch::Aarch64.syscall_number("execve"), Some(221));
        assert_eq!(Arch::Arm.syscall_number("execve"), Some(11));
        assert_eq!(Arch::Ppc64le.syscall_number("execve"), Some(11));
        assert_eq!(Arch::S390x.syscall_number("execve"), Some(11));
        assert_eq!(Arch::Riscv64.syscall_number("execve"), Some(221));
        assert_eq!(Arch::X86_64.syscall_name(2), Some("open"));
        assert_eq!(Arch::Aarch64.syscall_name(56), Some("openat"));
        assert_eq!(Arch::Aarch64.syscall_number("open"), None);
        assert_eq!(Arch::S390.syscall_name(11), None);
        assert_eq!(Arch::X86_64.syscall_name(100_000), None);
        assert_eq!(uring_op_name(18), Some("openat"));
        assert_eq!(uring_op_number("connect"), Some(16));
    }

    #[test]
    fn b64_and_b32_are_the_hosts_abis() {
        assert_eq!(Arch::by_name("b64"), Some(Arch::host()));
        assert!(Arch::host().is_64bit() || cfg!(target_pointer_width = "32"));
        assert_eq!(Arch::by_name("armv7l"), Some(Arch::Arm));
        assert_eq!(Arch::by_name("sparc"), None);
    }
}
