//! pauditd's engine: from audit records to complete, filtered, enriched events.
//!
//! Owns everything between the bytes the kernel (or an auditd log) hands us and an [`Event`]
//! ready to be serialized: header and log-line parsing, reassembly, sequence tracking,
//! filters, uid mapping, and the counters of what was dropped and why. It must never know how
//! events are written (that is the sinks crate) nor parse the configuration file (the config
//! crate); the binary wires them. The files it does read: rules files ([`rules`]), procfs and
//! cgroupfs ([`container`], [`lineage`], and [`session`] to name a foreign pid holder), and
//! the passwd and group databases ([`users`]).

pub mod add_message;
pub mod arch;
pub mod container;
pub mod decode;
pub mod event;
pub mod event_filter;
pub mod filter;
pub mod header;
pub mod lineage;
pub mod live;
pub mod logline;
pub mod netlink;
pub mod pool;
pub mod privileges;
pub mod processor;
pub mod reader;
pub mod reassemble;
pub mod receiver;
pub mod record;
pub mod replay;
pub mod ring;
pub mod rules;
pub mod session;
pub mod stats;
pub mod syscall_table;
pub mod tracking;
pub mod types;
pub mod uring;
pub mod users;

pub use event::Event;
pub use filter::{FilterAction, FilterSet, FilterSpec};
pub use processor::{Processor, ProcessorConfig};
pub use reassemble::{Completion, ReassemblerConfig};
pub use stats::{DropReason, Stats};
pub use tracking::TrackerConfig;
pub use users::{CachePolicy, UserDb, UserResolver, UserSource};
