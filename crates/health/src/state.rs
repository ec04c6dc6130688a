//! The state every clone of the layer, service and handle shares: lifecycle flags, checks, and
//! probe evaluation.

use std::{
    borrow::Cow,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU8, Ordering},
    },
};

use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode, header};
use palisade_core::OverloadState;
use tokio::{sync::watch, time::Instant};

use crate::{
    OverloadPolicy, Probe, Status,
    check::Schedule,
    config::{LIVEZ, READYZ},
    metrics::ProbeMetrics,
    report::{CheckReport, HealthReport, ServiceFields},
    runner::{CheckEntry, Lookup, Observation, background_loop},
};

/// The media type of the IETF health-check draft.
pub const HEALTH_JSON: HeaderValue = HeaderValue::from_static("application/health+json");
const NO_STORE: HeaderValue = HeaderValue::from_static("no-store");
const GET_HEAD: HeaderValue = HeaderValue::from_static("GET, HEAD");

/// A status not yet reported, for the probe status change log.
const UNKNOWN: u8 = u8::MAX;

pub(crate) struct Paths {
    pub(crate) live: Cow<'static, str>,
    pub(crate) ready: Cow<'static, str>,
    pub(crate) startup: Cow<'static, str>,
    pub(crate) aliases: bool,
}

impl Paths {
    /// The probe `path` belongs to, if any: a few string comparisons.
    #[inline]
    pub(crate) fn classify(&self, path: &str) -> Option<Probe> {
        if path == self.ready || (self.aliases && path == READYZ) {
            Some(Probe::Readiness)
        } else if path == self.live || (self.aliases && path == LIVEZ) {
            Some(Probe::Liveness)
        } else if path == self.startup {
            Some(Probe::Startup)
        } else {
            None
        }
    }
}

pub(crate) struct Lifecycle {
    started: AtomicBool,
    draining: AtomicBool,
    /// Wakes those waiting for the drain to begin.
    drain_tx: watch::Sender<bool>,
}

impl Lifecycle {
    fn new() -> Self {
        Self {
            started: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            drain_tx: watch::Sender::new(false),
        }
    }

    pub(crate) fn is_started(&self) -> bool {
        self.started.load(Ordering::Acquire)
    }

    #[inline]
    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Whether this call did it.
    pub(crate) fn mark_started(&self) -> bool {
        !self.started.swap(true, Ordering::AcqRel)
    }

    /// Whether this call did it.
    pub(crate) fn begin_drain(&self) -> bool {
        let first = !self.draining.swap(true, Ordering::AcqRel);
        if first {
            self.drain_tx.send_replace(true);
        }
        first
    }

    pub(crate) async fn draining(&self) {
        let mut rx = self.drain_tx.subscribe();
        // The sender lives as long as `self`, so this cannot fail while we borrow it.
        let _ = rx.wait_for(|draining| *draining).await;
    }
}

pub(crate) struct Shared {
    pub(crate) paths: Paths,
    pub(crate) include_details: bool,
    pub(crate) overload_policy: OverloadPolicy,
    pub(crate) overload: OverloadState,
    pub(crate) close_while_draining: bool,
    pub(crate) service: ServiceFields,
    pub(crate) lifecycle: Lifecycle,
    pub(crate) liveness: Vec<Arc<CheckEntry>>,
    pub(crate) readiness: Vec<Arc<CheckEntry>>,
    last_status: [AtomicU8; 3],
    background_started: AtomicBool,
    probe_metrics: ProbeMetrics,
}

pub(crate) struct SharedParts {
    pub(crate) paths: Paths,
    pub(crate) include_details: bool,
    pub(crate) overload_policy: OverloadPolicy,
    pub(crate) overload: OverloadState,
    pub(crate) close_while_draining: bool,
    pub(crate) service: ServiceFields,
    pub(crate) liveness: Vec<Arc<CheckEntry>>,
    pub(crate) readiness: Vec<Arc<CheckEntry>>,
}

/// What a probe waits on: results at hand, and runs in flight.
enum Slot {
    Done(Arc<CheckEntry>, Observation),
    Pending(Arc<CheckEntry>, crate::runner::Ticket),
}

impl Shared {
    pub(crate) fn new(parts: SharedParts) -> Arc<Self> {
        let shared = Arc::new(Self {
            paths: parts.paths,
            include_details: parts.include_details,
            overload_policy: parts.overload_policy,
            overload: parts.overload,
            close_while_draining: parts.close_while_draining,
            service: parts.service,
            lifecycle: Lifecycle::new(),
            liveness: parts.liveness,
            readiness: parts.readiness,
            last_status: std::array::from_fn(|_| AtomicU8::new(UNKNOWN)),
            background_started: AtomicBool::new(false),
            probe_metrics: ProbeMetrics::new(),
        });
        shared.ensure_background();
        shared
    }

    /// Starts the background checks' loops, once, as soon as there is a Tokio runtime: at build
    /// time if built inside one, else at the first probe.
    pub(crate) fn ensure_background(&self) {
        if self.background_started.load(Ordering::Acquire) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.background_started.swap(true, Ordering::AcqRel) {
            return;
        }
        for entry in self.liveness.iter().chain(&self.readiness) {
            if let Schedule::Background { period } = entry.schedule {
                runtime.spawn(background_loop(Arc::downgrade(entry), period));
            }
        }
    }

    fn entries(&self, probe: Probe) -> &[Arc<CheckEntry>] {
        match probe {
            Probe::Liveness => &self.liveness,
            Probe::Readiness => &self.readiness,
            Probe::Startup => &[],
        }
    }

    /// The probe's own parts (`lifecycle`, `overload`), and whether it should run its checks:
    /// not when it fails anyway because the application is starting or draining.
    fn builtins(&self, probe: Probe) -> (Vec<CheckReport>, bool) {
        let mut parts = Vec::with_capacity(2 + self.entries(probe).len());
        match probe {
            Probe::Liveness => return (parts, true),
            Probe::Startup => {
                let started = self.lifecycle.is_started();
                parts.push(CheckReport::builtin(
                    "lifecycle",
                    if started { Status::Pass } else { Status::Fail },
                    (!started).then(|| "starting".to_owned()),
                ));
                return (parts, false);
            }
            Probe::Readiness => {}
        }
        let lifecycle = if !self.lifecycle.is_started() {
            Some("starting")
        } else if self.lifecycle.is_draining() {
            Some("draining")
        } else {
            None
        };
        parts.push(CheckReport::builtin(
            "lifecycle",
            if lifecycle.is_some() {
                Status::Fail
            } else {
                Status::Pass
            },
            lifecycle.map(str::to_owned),
        ));
        if self.overload_policy != OverloadPolicy::Ignore {
            parts.push(self.overload_part());
        }
        (parts, lifecycle.is_none())
    }

    fn overload_part(&self) -> CheckReport {
        let snapshot = self.overload.snapshot();
        let status = match (snapshot.overloaded, self.overload_policy) {
            (false, _) | (true, OverloadPolicy::Ignore) => Status::Pass,
            (true, OverloadPolicy::Fail) => Status::Fail,
            (true, OverloadPolicy::Warn) => Status::Warn,
        };
        let output = snapshot.overloaded.then(|| {
            let sources: Vec<String> = self
                .overload
                .sources()
                .into_iter()
                .filter(|s| s.overloaded)
                .map(|s| s.name.into_owned())
                .collect();
            format!("overloaded: {}", sources.join(", "))
        });
        let mut part = CheckReport::builtin("overload", status, output);
        part.observed = Some(((snapshot.level * 1000.0).round() / 10.0, "percent"));
        part
    }

    fn part(entry: &CheckEntry, observation: Observation) -> CheckReport {
        CheckReport {
            name: Arc::clone(&entry.name),
            status: observation.status,
            critical: entry.critical,
            output: observation.output,
            time: Some(observation.wall),
            duration: Some(observation.duration),
            observed: None,
        }
    }

    /// The report, if it can be made without waiting for a check run.
    pub(crate) fn report_now(&self, probe: Probe) -> Option<HealthReport> {
        let now = Instant::now();
        let (mut parts, run_checks) = self.builtins(probe);
        for entry in self.entries(probe) {
            let observation = if run_checks {
                Some(entry.peek(now)?)
            } else {
                entry.known(now)
            };
            if let Some(observation) = observation {
                parts.push(Self::part(entry, observation));
            }
        }
        Some(self.finish(probe, parts))
    }

    /// The report, running the checks that need it (concurrently, each with single flight).
    pub(crate) async fn report(self: Arc<Self>, probe: Probe) -> HealthReport {
        self.ensure_background();
        let now = Instant::now();
        let (mut parts, run_checks) = self.builtins(probe);
        let mut slots = Vec::with_capacity(self.entries(probe).len());
        for entry in self.entries(probe) {
            if run_checks {
                slots.push(match entry.lookup(now) {
                    Lookup::Ready(o) => Slot::Done(Arc::clone(entry), o),
                    Lookup::Wait(ticket) => Slot::Pending(Arc::clone(entry), ticket),
                });
            } else if let Some(o) = entry.known(now) {
                slots.push(Slot::Done(Arc::clone(entry), o));
            }
        }
        // Every run is already going in its own task: waiting in turn costs the longest, not the sum.
        for slot in slots {
            let (entry, observation) = match slot {
                Slot::Done(entry, o) => (entry, o),
                Slot::Pending(entry, ticket) => {
                    let o = ticket.wait().await;
                    (entry, o)
                }
            };
            parts.push(Self::part(&entry, observation));
        }
        self.finish(probe, parts)
    }

    /// Assembles the report, records the probe metric and logs a change of status.
    fn finish(&self, probe: Probe, parts: Vec<CheckReport>) -> HealthReport {
        let report = HealthReport::assemble(probe, parts);
        let status = report.status();
        self.probe_metrics.record(probe, status);
        let previous = self.last_status[probe.index()].swap(status.to_u8(), Ordering::AcqRel);
        if previous != status.to_u8() {
            let from = Status::from_u8(previous).map_or("none", Status::as_str);
            let summary = report.summary().unwrap_or_default();
            let probe = probe.as_str();
            let to = status.as_str();
            match status {
                Status::Pass => tracing::info!(probe, from, to, "health probe status changed"),
                Status::Warn | Status::Fail => {
                    tracing::warn!(probe, from, to, summary, "health probe status changed");
                }
            }
        }
        report
    }

    /// The HTTP answer to a probe.
    pub(crate) fn respond(&self, report: &HealthReport) -> Response<Bytes> {
        let body = if self.include_details {
            report.detailed_json(&self.service)
        } else {
            report.status_body()
        };
        let mut response = Response::new(body);
        *response.status_mut() = report.http_status();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HEALTH_JSON);
        headers.insert(header::CACHE_CONTROL, NO_STORE);
        response
    }

    /// Probes answer GET and HEAD only.
    pub(crate) fn method_not_allowed() -> Response<Bytes> {
        let mut response = Response::new(Bytes::new());
        *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
        let headers = response.headers_mut();
        headers.insert(header::ALLOW, GET_HEAD);
        headers.insert(header::CACHE_CONTROL, NO_STORE);
        response
    }

    pub(crate) fn allows(method: &Method) -> bool {
        method == Method::GET || method == Method::HEAD
    }
}
