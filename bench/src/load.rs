//! The load generator.

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddr},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{HeaderName, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::{net::TcpStream, time::Instant};

/// One kind of request in a mix.
#[derive(Debug, Clone)]
pub struct RequestClass {
    /// Name in reports (for example `critical`).
    pub name: String,
    /// HTTP method.
    pub method: Method,
    /// Path and query.
    pub path: String,
    /// Extra headers (for example a priority header).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Relative weight in the mix.
    pub weight: u32,
    /// Send each request of this class as one of this many clients: an `X-Forwarded-For`
    /// counting up through `10.0.0.0/8` (a counter the classes share), back to the first after
    /// that many. The addresses are only written into the header, never connected to; a server
    /// that trusts its loopback peer as a proxy sees these clients. `None`: no header, the
    /// generator's own address.
    pub clients: Option<u32>,
}

/// A million clients: as many distinct `X-Forwarded-For` addresses as a flood needs.
pub const DISTINCT_CLIENTS: u32 = 1_000_000;

impl RequestClass {
    /// A `GET path` class of weight 1.
    pub fn get(name: &str, path: &str) -> Self {
        Self {
            name: name.into(),
            method: Method::GET,
            path: path.into(),
            headers: Vec::new(),
            weight: 1,
            clients: None,
        }
    }
}

/// How requests are generated.
#[derive(Debug, Clone, Copy)]
pub enum Mode {
    /// A fixed arrival rate in requests per second, regardless of how the server copes; latency
    /// is measured from each request's scheduled time.
    OpenLoop {
        /// Requests per second.
        rate: f64,
    },
    /// Every connection sends its next request as soon as the previous one completes; latency
    /// is measured from the actual send time. Measures peak throughput, hides stalls.
    ClosedLoop,
}

/// A load run.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// The server.
    pub target: SocketAddr,
    /// Open or closed loop.
    pub mode: Mode,
    /// The most connections open at once (the pool); in closed loop, the concurrency.
    pub connections: usize,
    /// Measured time.
    pub duration: Duration,
    /// Time before measuring starts (results discarded).
    pub warmup: Duration,
    /// After the schedule ends, how long outstanding requests may still complete.
    pub grace: Duration,
    /// The request mix.
    pub mix: Vec<RequestClass>,
}

/// Results of one class.
#[derive(Debug, Clone)]
pub struct ClassStats {
    /// Latency of successful (2xx) responses, in microseconds.
    pub success: Histogram<u64>,
    /// Latency of rejections (503, 429), in microseconds.
    pub rejected: Histogram<u64>,
    /// Responses by status code.
    pub statuses: BTreeMap<u16, u64>,
    /// Transport errors (connection refused, reset, malformed).
    pub errors: u64,
    /// Requests scheduled in the measured window.
    pub scheduled: u64,
}

impl ClassStats {
    fn new() -> Self {
        let histogram = || Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid bounds");
        Self {
            success: histogram(),
            rejected: histogram(),
            statuses: BTreeMap::new(),
            errors: 0,
            scheduled: 0,
        }
    }

    /// Adds `other`'s counts and latencies (one class measured against several servers).
    ///
    /// # Panics
    ///
    /// Never: every histogram of the generator has the same bounds.
    pub fn merge(&mut self, other: &ClassStats) {
        self.success.add(&other.success).expect("same bounds");
        self.rejected.add(&other.rejected).expect("same bounds");
        for (status, count) in &other.statuses {
            *self.statuses.entry(*status).or_default() += count;
        }
        self.errors += other.errors;
        self.scheduled += other.scheduled;
    }

    /// Responses received.
    pub fn completed(&self) -> u64 {
        self.statuses.values().sum()
    }

    /// Successful (2xx) responses.
    pub fn succeeded(&self) -> u64 {
        self.success.len()
    }

    /// Rejections (503 and 429).
    pub fn rejections(&self) -> u64 {
        self.statuses
            .iter()
            .filter(|(s, _)| **s == 503 || **s == 429)
            .map(|(_, c)| c)
            .sum()
    }
}

/// Results of a run.
#[derive(Debug, Clone)]
pub struct LoadReport {
    /// Per class, in mix order.
    pub classes: Vec<(String, ClassStats)>,
    /// The measured duration.
    pub duration: Duration,
    /// Scheduled requests that had not completed when the grace period ended.
    pub timed_out: u64,
}

impl LoadReport {
    /// All classes together.
    pub fn total(&self) -> ClassStats {
        let mut total = ClassStats::new();
        for (_, stats) in &self.classes {
            total.merge(stats);
        }
        total
    }

    /// Responses per second.
    pub fn achieved_rps(&self) -> f64 {
        self.total().completed() as f64 / self.duration.as_secs_f64()
    }

    /// Successful responses per second.
    pub fn goodput_rps(&self) -> f64 {
        self.total().succeeded() as f64 / self.duration.as_secs_f64()
    }
}

#[derive(Clone, Copy)]
struct Job {
    class: usize,
    /// When the request should have been sent.
    intended: Instant,
    /// Whether it falls in the measured window.
    measured: bool,
}

struct Shared {
    spec: LoadSpec,
    requests: Vec<Request<Empty<Bytes>>>,
    stats: Mutex<Vec<ClassStats>>,
    /// The next address of the classes that send as several clients.
    next_client: AtomicU32,
}

/// Runs `spec` and returns what was measured.
///
/// # Errors
///
/// When the mix is empty or the first connection cannot be opened.
///
/// # Panics
///
/// When a worker panicked while holding the statistics (a bug in the generator).
pub async fn run(spec: LoadSpec) -> Result<LoadReport, String> {
    if spec.mix.is_empty() || spec.mix.iter().all(|c| c.weight == 0) {
        return Err("the request mix is empty".into());
    }
    if spec.connections == 0 {
        return Err("at least one connection is needed".into());
    }
    // Fail fast when the server is not there at all.
    TcpStream::connect(spec.target)
        .await
        .map_err(|e| format!("connect {}: {e}", spec.target))?;
    let requests = spec
        .mix
        .iter()
        .map(|class| template(class, spec.target))
        .collect::<Result<_, _>>()?;
    let shared = Arc::new(Shared {
        stats: Mutex::new(spec.mix.iter().map(|_| ClassStats::new()).collect()),
        requests,
        spec,
        next_client: AtomicU32::new(0),
    });
    let picker = ClassPicker::new(&shared.spec.mix);
    let start = Instant::now();
    let measure_from = start + shared.spec.warmup;
    let end = measure_from + shared.spec.duration;
    let timed_out = match shared.spec.mode {
        Mode::OpenLoop { rate } => open_loop(&shared, picker, rate, start, measure_from, end).await,
        Mode::ClosedLoop => closed_loop(&shared, picker, measure_from, end).await,
    };
    let stats = shared.stats.lock().expect("stats").clone();
    let classes = shared
        .spec
        .mix
        .iter()
        .map(|c| c.name.clone())
        .zip(stats)
        .collect();
    Ok(LoadReport {
        classes,
        duration: shared.spec.duration,
        timed_out,
    })
}

fn template(class: &RequestClass, target: SocketAddr) -> Result<Request<Empty<Bytes>>, String> {
    let mut builder = Request::builder()
        .method(class.method.clone())
        .uri(&class.path)
        .header(http::header::HOST, target.to_string());
    for (name, value) in &class.headers {
        builder = builder.header(name, value);
    }
    builder
        .body(Empty::new())
        .map_err(|e| format!("request {}: {e}", class.name))
}

fn copy(template: &Request<Empty<Bytes>>) -> Request<Empty<Bytes>> {
    let mut request = Request::new(Empty::new());
    *request.method_mut() = template.method().clone();
    *request.uri_mut() = template.uri().clone();
    *request.headers_mut() = template.headers().clone();
    request
}

/// Chooses classes by weight with a seeded generator, so runs are repeatable.
struct ClassPicker {
    cumulative: Vec<u32>,
    rng: fastrand::Rng,
}

impl ClassPicker {
    fn new(mix: &[RequestClass]) -> Self {
        let mut sum = 0;
        let cumulative = mix.iter().map(|c| {
            sum += c.weight;
            sum
        });
        Self {
            cumulative: cumulative.collect(),
            rng: fastrand::Rng::with_seed(0x5eed),
        }
    }

    fn pick(&mut self) -> usize {
        let total = *self.cumulative.last().unwrap_or(&1);
        let x = self.rng.u32(0..total);
        self.cumulative.iter().position(|&c| x < c).unwrap_or(0)
    }
}

async fn open_loop(
    shared: &Arc<Shared>,
    mut picker: ClassPicker,
    rate: f64,
    start: Instant,
    measure_from: Instant,
    end: Instant,
) -> u64 {
    let (tx, rx) = async_channel::unbounded::<Job>();
    let workers: Vec<_> = (0..shared.spec.connections)
        .map(|_| {
            let (shared, rx) = (Arc::clone(shared), rx.clone());
            tokio::spawn(async move {
                let mut connection = None;
                while let Ok(job) = rx.recv().await {
                    execute(&shared, &mut connection, job, job.intended).await;
                }
            })
        })
        .collect();
    // The timetable runs on its own thread with the OS's sleep (tens of microseconds of
    // precision): tokio's timer has millisecond granularity, which would add up to a millisecond
    // of the generator's own lag to every measured latency.
    let interval = Duration::from_secs_f64(1.0 / rate.max(0.001));
    let (start_std, end_std) = (start.into_std(), end.into_std());
    let measure_from_std = measure_from.into_std();
    let class_count = shared.spec.mix.len();
    let dispatcher = std::thread::spawn(move || {
        let mut measured = vec![0u64; class_count];
        let mut scheduled = 0u32;
        loop {
            let intended = start_std + interval * scheduled;
            if intended >= end_std {
                break;
            }
            let now = std::time::Instant::now();
            if intended > now {
                std::thread::sleep(intended - now);
            }
            let class = picker.pick();
            let is_measured = intended >= measure_from_std;
            if is_measured {
                measured[class] += 1;
            }
            let job = Job {
                class,
                intended: Instant::from_std(intended),
                measured: is_measured,
            };
            if tx.send_blocking(job).is_err() {
                break;
            }
            scheduled += 1;
        }
        tx.close();
        measured
    });
    let measured =
        tokio::task::spawn_blocking(move || dispatcher.join().expect("dispatcher thread"))
            .await
            .expect("dispatcher join");
    for (stats, count) in shared
        .stats
        .lock()
        .expect("stats")
        .iter_mut()
        .zip(&measured)
    {
        stats.scheduled = *count;
    }
    finish(shared, workers, end).await
}

async fn closed_loop(
    shared: &Arc<Shared>,
    picker: ClassPicker,
    measure_from: Instant,
    end: Instant,
) -> u64 {
    let picker = Arc::new(Mutex::new(picker));
    let workers: Vec<_> = (0..shared.spec.connections)
        .map(|_| {
            let (shared, picker) = (Arc::clone(shared), Arc::clone(&picker));
            tokio::spawn(async move {
                let mut connection = None;
                loop {
                    let now = Instant::now();
                    if now >= end {
                        return;
                    }
                    let class = picker.lock().expect("picker").pick();
                    let job = Job {
                        class,
                        intended: now,
                        measured: now >= measure_from,
                    };
                    execute(&shared, &mut connection, job, now).await;
                }
            })
        })
        .collect();
    finish(shared, workers, end).await
}

/// Waits for the workers until the grace period ends, then stops them; returns how many measured
/// requests never completed.
async fn finish(
    shared: &Arc<Shared>,
    workers: Vec<tokio::task::JoinHandle<()>>,
    end: Instant,
) -> u64 {
    let deadline = end + shared.spec.grace;
    for worker in &workers {
        while !worker.is_finished() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    for worker in workers {
        worker.abort();
    }
    let stats = shared.stats.lock().expect("stats");
    stats
        .iter()
        .map(|s| s.scheduled.saturating_sub(s.completed() + s.errors))
        .sum()
}

async fn connect(target: SocketAddr) -> Result<SendRequest<Empty<Bytes>>, String> {
    let stream = TcpStream::connect(target)
        .await
        .map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// Sends one request on the worker's connection (opening one if needed) and records it.
async fn execute(
    shared: &Shared,
    connection: &mut Option<SendRequest<Empty<Bytes>>>,
    job: Job,
    timed_from: Instant,
) {
    let outcome = send(shared, connection, job.class).await;
    let latency = Instant::now().saturating_duration_since(timed_from);
    if !job.measured {
        return;
    }
    let micros = u64::try_from(latency.as_micros())
        .unwrap_or(u64::MAX)
        .max(1);
    let mut all = shared.stats.lock().expect("stats");
    let stats = &mut all[job.class];
    if matches!(shared.spec.mode, Mode::ClosedLoop) {
        stats.scheduled += 1;
    }
    match outcome {
        Ok(code) => {
            *stats.statuses.entry(code.as_u16()).or_default() += 1;
            if code.is_success() {
                stats.success.saturating_record(micros);
            } else if code == StatusCode::SERVICE_UNAVAILABLE
                || code == StatusCode::TOO_MANY_REQUESTS
            {
                stats.rejected.saturating_record(micros);
            }
        }
        Err(_) => stats.errors += 1,
    }
}

async fn send(
    shared: &Shared,
    connection: &mut Option<SendRequest<Empty<Bytes>>>,
    class: usize,
) -> Result<StatusCode, String> {
    // A connection the server closed (Connection: close, or a refusal) is replaced once.
    for attempt in 0..2 {
        if connection.as_ref().is_none_or(SendRequest::is_closed) {
            *connection = Some(connect(shared.spec.target).await?);
        }
        let sender = connection.as_mut().expect("connected");
        if sender.ready().await.is_err() {
            *connection = None;
            continue;
        }
        let mut request = copy(&shared.requests[class]);
        if let Some(clients) = shared.spec.mix[class].clients {
            let n = shared.next_client.fetch_add(1, Ordering::Relaxed) % clients.clamp(1, 1 << 24);
            let ip = Ipv4Addr::from(0x0a00_0000 + n).to_string();
            request.headers_mut().insert(
                HeaderName::from_static("x-forwarded-for"),
                HeaderValue::try_from(ip).map_err(|e| e.to_string())?,
            );
        }
        match sender.send_request(request).await {
            Ok(response) => {
                let status = response.status();
                let close = response
                    .headers()
                    .get(http::header::CONNECTION)
                    .is_some_and(|v| v == "close");
                let body = response.into_body().collect().await;
                if close || body.is_err() {
                    *connection = None;
                }
                return body.map(|_| status).map_err(|e| e.to_string());
            }
            Err(err) if attempt == 0 && err.is_canceled() => *connection = None,
            Err(err) => {
                *connection = None;
                return Err(err.to_string());
            }
        }
    }
    Err("connection closed twice".into())
}
