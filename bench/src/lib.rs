//! Palisade's load harness, run by `cargo xtask bench <scenario>`.
//!
//! - [`load`]: an open-loop HTTP/1.1 load generator. Requests are scheduled on a fixed timetable
//!   and each latency is measured from the request's *intended* send time, so a server that stalls
//!   cannot hide the stall by slowing the generator down (no coordinated omission). A closed-loop
//!   mode (N connections as fast as possible) measures peak throughput.
//! - [`report`]: the results as a markdown table, JSON and an SVG chart.
//! - [`process`]: the servers under test, run as separate release-mode processes pinned to their
//!   own core.
//! - [`scenario`] and [`scenarios`]: each scenario's servers under test and how it drives them;
//!   [`servers`] holds the building blocks they share.

// Counts and durations are converted to f64 for rates and percentiles; they stay far below
// 2^52, where the conversion is exact.
#![allow(clippy::cast_precision_loss)]

pub mod load;
pub mod process;
pub mod report;
pub mod scenario;
pub mod scenarios;
pub mod servers;
