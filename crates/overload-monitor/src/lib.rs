//! Resource monitors that feed Palisade's overload signal: the container's memory (cgroup v2
//! and v1, or the process's RSS), open file descriptors and the Tokio runtime's lag, sampled on a
//! timer, each with three levels and hysteresis.
//!
//! A server whose memory climbs towards its container limit is OOM-killed while its readiness
//! says `pass`; one at its descriptor limit wedges in `accept`. These monitors publish each
//! resource into the shared [`OverloadState`](palisade_core::OverloadState) that the priority
//! shedder and the readiness probe already read, so the server sheds low-priority work first and
//! refuses new work before the kernel decides for it:
//!
//! | level | from (default) | published | what the preset does |
//! |---|---|---|---|
//! | normal | | level 0 | nothing |
//! | warn | 80 % | level 0.6 (`warn_level`) | the shedder sheds every `Sheddable` request |
//! | degrade | 90 % | level 0.7 (`degrade_level`) | and every `SheddablePlus` request; `Connection: close` on responses ([`CloseConnectionsLayer`]) |
//! | critical | 95 % | overloaded, at the observed ratio | every request but `CriticalPlus` refused (503 + `Retry-After`); readiness fails, naming the resource; with an operations port for the probes, `palisade::serve` stops accepting public connections until it eases |
//!
//! A level is entered as soon as a sample crosses it and left only when the ratio has stayed
//! below `resume` (80 %) for `dwell` (1 s): recovery is automatic, without flapping. Probes are
//! answered before the shedder and never refused.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use palisade_core::OverloadState;
//! use palisade_overload_monitor::{LagConfig, Monitor, OverloadMonitor, Reading, Thresholds};
//!
//! /// A pool of 100 connections, 97 checked out.
//! struct Pool;
//! impl Monitor for Pool {
//!     fn name(&self) -> &'static str { "db_pool" }
//!     fn read(&mut self) -> std::io::Result<Option<Reading>> { Ok(Some(Reading::new(97, 100))) }
//! }
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let state = OverloadState::new();
//! let mut lag = LagConfig::default();
//! lag.enabled = true;
//! let monitors = OverloadMonitor::builder()
//!     .lag(lag)
//!     .monitor(Pool, Thresholds::default())
//!     .overload_state(state.clone())
//!     .build()
//!     .expect("a valid configuration");
//! let running = monitors.spawn();
//! tokio::time::sleep(Duration::from_millis(300)).await;
//! assert!(state.is_overloaded(), "97 % of the pool is past critical");
//! running.stop().await; // stops the monitors and withdraws their sources
//! assert!(!state.is_overloaded());
//! # }
//! ```
//!
//! # Metrics
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `palisade_overload_resource_ratio` | gauge | `resource` (`memory`, `fds`, `lag`, a custom name) |
//! | `palisade_overload_pressure` | gauge (0 normal to 3 critical) | `resource`, `mode` |
//! | `palisade_overload_action` | gauge (1 while applied) | `action` (`shed_sheddable`, `shed_sheddable_plus`, `refuse_new_requests`) |
//!
//! Each change of level is logged once (`warn` going up, `info` coming down), and a resource that
//! cannot be read is logged once until it can again.

mod close;
mod config;
mod fds;
mod lag;
mod memory;
pub mod metrics;
mod monitor;
mod pressure;

pub use close::{CloseConnections, CloseConnectionsLayer, ResponseFuture};
pub use config::{
    FdConfig, LagConfig, MemoryConfig, OverloadMonitorBuilder, OverloadMonitorConfig,
};
pub use fds::{FdMonitor, InProcessCount};
pub use lag::LagMonitor;
pub use memory::{MemoryMonitor, MemorySource};
pub use monitor::{Monitor, MonitorHandle, OverloadMonitor, Reading};
pub use pressure::{Pressure, PressureHandle, Thresholds};
