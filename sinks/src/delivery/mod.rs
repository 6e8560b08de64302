//! Delivery: what happens to an encoded batch after the writer offered it to an output.
//!
//! Owns each output's queue, policy and threads ([`output`]) and its durable disk buffer
//! ([`spool`]): the component that decides, per output, whether a batch waits in memory,
//! goes to disk, is retried or is counted lost, and in which order it reaches the
//! destination. It must never know how a batch was encoded (the formats) nor how a
//! destination is spoken to (the transports: `Sink`), and never make the writer wait on a
//! disk or on another output.

pub mod output;
pub mod spool;
