//! A scripted upstream tower service that logs each call (when, method, body) and notices
//! cancelled calls, and a metrics reader.

#![allow(dead_code, unreachable_pub)]

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body::Body;
use http_body_util::BodyExt;
use metrics_util::debugging::{DebugValue, Snapshotter};
use palisade_retry::ReplayBody;
use tokio::time::Instant;
use tower::{Service, service_fn};

/// What the upstream does on one call.
#[derive(Debug, Clone)]
pub struct Reply {
    pub delay: Duration,
    pub result: Result<(u16, Option<String>), &'static str>,
}

pub fn status(code: u16) -> Reply {
    Reply {
        delay: Duration::ZERO,
        result: Ok((code, None)),
    }
}

pub fn error(message: &'static str) -> Reply {
    Reply {
        delay: Duration::ZERO,
        result: Err(message),
    }
}

impl Reply {
    pub fn retry_after(mut self, value: impl Into<String>) -> Self {
        if let Ok((_, header)) = &mut self.result {
            *header = Some(value.into());
        }
        self
    }

    pub fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

#[derive(Debug, Clone)]
pub struct Call {
    pub at: Duration,
    pub method: Method,
    pub body: Bytes,
}

/// The upstream's log: its calls, and how many were dropped before they answered.
#[derive(Clone)]
pub struct Log {
    start: Instant,
    calls: Arc<Mutex<Vec<Call>>>,
    cancelled: Arc<AtomicUsize>,
}

impl Log {
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            calls: Arc::default(),
            cancelled: Arc::default(),
        }
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.calls.lock().unwrap().len()
    }

    /// When each call arrived, in milliseconds since the log was made.
    pub fn times_ms(&self) -> Vec<u128> {
        self.calls().iter().map(|c| c.at.as_millis()).collect()
    }

    pub fn cancelled(&self) -> usize {
        self.cancelled.load(Ordering::SeqCst)
    }

    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }
}

/// Counts a call as cancelled if it is dropped before it answers.
struct InFlight {
    cancelled: Arc<AtomicUsize>,
    done: bool,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if !self.done {
            self.cancelled.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// An upstream answering call `n` (from 0) with `script(n)`.
pub fn upstream<B>(
    log: &Log,
    script: impl Fn(usize) -> Reply + Send + Sync + 'static,
) -> impl Service<
    Request<ReplayBody<B>>,
    Response = Response<()>,
    Error = &'static str,
    Future = impl Send,
> + Clone
+ Send
+ 'static
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: std::fmt::Debug + Send,
{
    let log = log.clone();
    let script = Arc::new(script);
    service_fn(move |request: Request<ReplayBody<B>>| {
        let log = log.clone();
        let script = Arc::clone(&script);
        async move {
            let at = log.start.elapsed();
            let n = {
                let mut calls = log.calls.lock().unwrap();
                calls.push(Call {
                    at,
                    method: request.method().clone(),
                    body: Bytes::new(),
                });
                calls.len() - 1
            };
            let mut guard = InFlight {
                cancelled: Arc::clone(&log.cancelled),
                done: false,
            };
            let body = request
                .into_body()
                .collect()
                .await
                .map_err(|_| "body error")?
                .to_bytes();
            log.calls.lock().unwrap()[n].body = body;
            let reply = script(n);
            tokio::time::sleep(reply.delay).await;
            guard.done = true;
            let (code, retry_after) = reply.result?;
            let mut response = Response::builder().status(code);
            if let Some(value) = retry_after {
                response = response.header("retry-after", value);
            }
            Ok(response.body(()).unwrap())
        }
    })
}

/// The retry metrics since the last reading (the debugging recorder resets on each snapshot).
#[derive(Debug, Default)]
pub struct Reading {
    pub outcomes: std::collections::HashMap<String, u64>,
    pub tokens: Option<f64>,
}

impl Reading {
    /// `palisade_retry_attempts_total{outcome}`, if registered.
    pub fn outcome(&self, outcome: &str) -> Option<u64> {
        self.outcomes.get(outcome).copied()
    }
}

pub fn read(snapshotter: &Snapshotter) -> Reading {
    let mut reading = Reading::default();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        match value {
            DebugValue::Counter(n) if key.name() == palisade_retry::metrics::ATTEMPTS => {
                let label = |name: &str| key.labels().find(|l| l.key() == name).unwrap().value();
                // Enforcing series by outcome alone, observe-only ones as `outcome/observe_only`.
                let outcome = match label("mode") {
                    "enforce" => label("outcome").to_owned(),
                    mode => format!("{}/{mode}", label("outcome")),
                };
                reading.outcomes.insert(outcome, n);
            }
            DebugValue::Gauge(g) if key.name() == palisade_retry::metrics::BUDGET_TOKENS => {
                reading.tokens = Some(g.into_inner());
            }
            _ => {}
        }
    }
    reading
}
