//! `retry`: what retries cost an upstream. A client sends `GET /` at a fixed offered rate to an
//! upstream that is healthy, fails 20 % of its calls transiently (`503`, at random), or fails
//! all of them, and the scenario counts how many calls succeeded and how many requests reached
//! the upstream (counted by the upstream itself).
//!
//! Systems, all in the load generator's process, each with a fresh client (budget, breaker):
//!
//! - `no retries`: hyper's client alone;
//! - `naive retries`: tower's `Retry` with a policy that retries any `5xx` or error at once, up
//!   to 3 attempts, no budget (what most hand-written retry loops do);
//! - `palisade`: [`palisade::client`] with its defaults (3 attempts, full-jitter backoff, a
//!   20 % + 10/s budget, the upstream's breaker seeing every attempt, 1 s attempt timeout);
//! - `palisade, breaker observe-only`: the same with the breaker only counting, so the retry
//!   budget alone bounds the load (the budget is what a breaker-less retry layer can promise);
//! - `palisade stacked` (100 % failing only): the client stack calls a middle service (its own
//!   process) that calls the upstream through its own Palisade client stack: the retries of two
//!   layers, which multiply naively (3 × 3 attempts).
//!
//! Rows: `class` is the condition, `goodput rps / offered rps` the success ratio, and `ratio`
//! the upstream load ratio (requests that reached the upstream / calls offered); the same per
//! row in the summary table printed before the main one.

use std::{
    future::{Ready, ready},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    extract::{Path, State},
    http::StatusCode,
    response::IntoResponse,
    routing::{get, post},
};
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::{
    client::legacy::{Client as HyperClient, connect::HttpConnector},
    rt::TokioExecutor,
};
use palisade::{
    ClientConfig, ClientLayer, client::ClientError, core::EnforcementMode, retry::ReplayBody,
};
use tokio::time::Instant;
use tower::{Layer, ServiceExt, retry::Policy};

use crate::{
    process::ServerProcess,
    report::{Row, out_dir},
    scenario::{App, BoxFuture, Scenario, ServerArgs, Timing},
};

/// The `retry` scenario.
pub(super) struct RetryStorm;

/// Calls offered per second.
const RATE: f64 = 500.0;
/// The longest a call may still take after the schedule ends (above the 2 s retry deadline).
const DRAIN: Duration = Duration::from_secs(3);

const CONDITIONS: [(&str, u64); 3] = [
    ("healthy", 0),
    ("20% transient 503", 20),
    ("100% failing", 100),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum System {
    NoRetries,
    Naive,
    Palisade,
    PalisadeBudgetOnly,
    Stacked,
}

impl System {
    const ALL: [Self; 5] = [
        Self::NoRetries,
        Self::Naive,
        Self::Palisade,
        Self::PalisadeBudgetOnly,
        Self::Stacked,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::NoRetries => "no retries",
            Self::Naive => "naive retries (3 attempts)",
            Self::Palisade => "palisade",
            Self::PalisadeBudgetOnly => "palisade, breaker observe-only",
            Self::Stacked => "palisade stacked (2 layers)",
        }
    }
}

/// The upstream: fails `percent` % of calls with `503`, counts the calls to `/`.
#[derive(Clone, Default)]
struct Upstream {
    percent: Arc<AtomicU64>,
    calls: Arc<AtomicU64>,
}

fn upstream_app() -> Router {
    let upstream = Upstream::default();
    Router::new()
        .route(
            "/",
            get(|State(u): State<Upstream>| async move {
                u.calls.fetch_add(1, Ordering::Relaxed);
                if fastrand::u64(0..100) < u.percent.load(Ordering::Relaxed) {
                    (StatusCode::SERVICE_UNAVAILABLE, "try again")
                } else {
                    (StatusCode::OK, "data")
                }
            }),
        )
        .route(
            "/calls",
            get(|State(u): State<Upstream>| async move {
                u.calls.load(Ordering::Relaxed).to_string()
            }),
        )
        .route(
            "/fail/{percent}",
            post(
                |State(u): State<Upstream>, Path(percent): Path<u64>| async move {
                    u.percent.store(percent.min(100), Ordering::Relaxed);
                    "ok"
                },
            ),
        )
        .with_state(upstream)
}

type Hyper = HyperClient<HttpConnector, ReplayBody<Empty<Bytes>>>;

fn hyper() -> Hyper {
    HyperClient::builder(TokioExecutor::new()).build_http()
}

fn palisade_client(name: &str, breaker_enforces: bool) -> Result<ClientLayer, String> {
    let mut config = ClientConfig::default();
    if !breaker_enforces {
        config.circuit_breaker.mode = EnforcementMode::ObserveOnly;
    }
    ClientLayer::from_config(name, config).map_err(|e| e.to_string())
}

/// The middle service of the stacked system: calls the upstream through its own client stack
/// and answers what it got; an open breaker is a `503` with its `Retry-After`, as the breaker's
/// server layer answers.
fn middle_app(upstream: &str) -> Result<Router, String> {
    let client = palisade_client("middle", true)?.layer(hyper());
    let url = format!("http://{upstream}/");
    Ok(Router::new().route(
        "/",
        get(move || {
            let (client, url) = (client.clone(), url.clone());
            async move {
                let request = Request::get(url)
                    .body(Empty::<Bytes>::new())
                    .expect("request");
                match client.oneshot(request).await {
                    Ok(response) => {
                        let status = response.status();
                        let _ = response.into_body().collect().await;
                        status.into_response()
                    }
                    Err(ClientError::CircuitOpen(rejected)) => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        [(
                            http::header::RETRY_AFTER,
                            rejected.retry_after_secs().to_string(),
                        )],
                    )
                        .into_response(),
                    Err(_) => StatusCode::BAD_GATEWAY.into_response(),
                }
            }
        }),
    ))
}

/// tower's `Retry` as hand-written retry loops do it: any `5xx` or error, at once, 3 attempts.
#[derive(Clone)]
struct Naive {
    left: u32,
}

impl<B> Policy<Request<Empty<Bytes>>, http::Response<B>, hyper_util::client::legacy::Error>
    for Naive
{
    type Future = Ready<()>;

    fn retry(
        &mut self,
        _: &mut Request<Empty<Bytes>>,
        result: &mut Result<http::Response<B>, hyper_util::client::legacy::Error>,
    ) -> Option<Self::Future> {
        let failed = result
            .as_ref()
            .map_or(true, |r| r.status().is_server_error());
        (failed && self.left > 0).then(|| {
            self.left -= 1;
            ready(())
        })
    }

    fn clone_request(&mut self, request: &Request<Empty<Bytes>>) -> Option<Request<Empty<Bytes>>> {
        Request::get(request.uri().clone()).body(Empty::new()).ok()
    }
}

/// One call: whether it succeeded (a 2xx whose body arrived).
type Call = BoxFuture<'static, bool>;

/// A client under test: makes one call to `url`.
type MakeCall = Box<dyn Fn() -> Call + Send + Sync>;

fn make_calls(system: System, target: &str) -> Result<MakeCall, String> {
    let url = format!("http://{target}/");
    let get = move || {
        Request::get(url.as_str())
            .body(Empty::<Bytes>::new())
            .expect("request")
    };
    Ok(match system {
        System::NoRetries => {
            let client = HyperClient::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
            Box::new(move || {
                let call = client.request(get());
                Box::pin(async move { success(call.await.ok()).await })
            })
        }
        System::Naive => {
            let client = tower::retry::RetryLayer::new(Naive { left: 2 })
                .layer(HyperClient::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>());
            Box::new(move || {
                let call = client.clone().oneshot(get());
                Box::pin(async move { success(call.await.ok()).await })
            })
        }
        System::Palisade | System::PalisadeBudgetOnly | System::Stacked => {
            let layer = palisade_client("bench", system != System::PalisadeBudgetOnly)?;
            let client = layer.layer(hyper());
            Box::new(move || {
                let call = client.clone().oneshot(get());
                Box::pin(async move { success(call.await.ok()).await })
            })
        }
    })
}

async fn success<B>(response: Option<http::Response<B>>) -> bool
where
    B: http_body::Body,
{
    let Some(response) = response else {
        return false;
    };
    let ok = response.status().is_success();
    ok && response.into_body().collect().await.is_ok()
}

/// Offers calls at [`RATE`] for `duration`, then waits for the stragglers: (offered, succeeded).
async fn drive(make: &MakeCall, duration: Duration) -> (u64, u64) {
    let succeeded = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let every = Duration::from_secs_f64(1.0 / RATE);
    let mut offered = 0_u64;
    let mut tasks = Vec::new();
    while start.elapsed() < duration {
        // Open loop: the schedule, not the answers, says when the next call starts.
        let at = start + every.mul_f64(offered as f64);
        tokio::time::sleep_until(at).await;
        let call = make();
        let succeeded = Arc::clone(&succeeded);
        tasks.push(tokio::spawn(async move {
            if call.await {
                succeeded.fetch_add(1, Ordering::Relaxed);
            }
        }));
        offered += 1;
    }
    let drained = tokio::time::timeout(DRAIN, futures_util::future::join_all(tasks)).await;
    if drained.is_err() {
        eprintln!(
            "retry: calls still running {} s after the schedule",
            DRAIN.as_secs()
        );
    }
    (offered, succeeded.load(Ordering::Relaxed))
}

async fn admin(
    target: std::net::SocketAddr,
    method: http::Method,
    path: &str,
) -> Result<String, String> {
    let client = HyperClient::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let request = Request::builder()
        .method(method)
        .uri(format!("http://{target}{path}"))
        .body(Empty::new())
        .map_err(|e| e.to_string())?;
    let response = client.request(request).await.map_err(|e| e.to_string())?;
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}

async fn upstream_calls(target: std::net::SocketAddr) -> Result<u64, String> {
    admin(target, http::Method::GET, "/calls")
        .await?
        .trim()
        .parse()
        .map_err(|e| format!("upstream /calls: {e}"))
}

impl Scenario for RetryStorm {
    fn name(&self) -> &'static str {
        "retry"
    }

    fn title(&self) -> &'static str {
        "retry: success and upstream load, healthy / 20% transient / 100% failing"
    }

    fn server(&self, system: &str, args: &ServerArgs) -> Result<App, String> {
        match system {
            "upstream" => Ok(App::Axum(upstream_app())),
            "middle" => {
                let upstream = args
                    .text("upstream")
                    .ok_or("middle needs --upstream ADDR")?;
                Ok(App::Axum(middle_app(upstream)?))
            }
            other => Err(format!("retry has no server {other:?}")),
        }
    }

    fn run(&'static self, timing: Timing) -> BoxFuture<'static, Result<Vec<Row>, String>> {
        Box::pin(async move {
            let upstream = ServerProcess::start(self.name(), "upstream", &ServerArgs::default())?;
            let middle = ServerProcess::start(
                self.name(),
                "middle",
                &ServerArgs::default().with("upstream", &upstream.addr),
            )?;
            let mut rows = Vec::new();
            let mut summary = Vec::new();
            for (condition, percent) in CONDITIONS {
                admin(
                    upstream.addr,
                    http::Method::POST,
                    &format!("/fail/{percent}"),
                )
                .await?;
                for system in System::ALL {
                    if system == System::Stacked && percent != 100 {
                        continue;
                    }
                    let target = if system == System::Stacked {
                        middle.addr
                    } else {
                        upstream.addr
                    };
                    let make = make_calls(system, &target.to_string())?;
                    let before = upstream_calls(upstream.addr).await?;
                    let (offered, succeeded) = drive(&make, timing.duration).await;
                    let reached = upstream_calls(upstream.addr).await? - before;
                    let secs = timing.duration.as_secs_f64();
                    let success_ratio = succeeded as f64 / offered.max(1) as f64;
                    let load_ratio = reached as f64 / offered.max(1) as f64;
                    eprintln!(
                        "{condition:<18} {:<32} offered {offered:>6}  succeeded {succeeded:>6}  upstream {reached:>6}",
                        system.name()
                    );
                    summary.push((system.name(), condition, success_ratio, load_ratio));
                    rows.push(Row {
                        system: system.name().to_owned(),
                        class: condition.to_owned(),
                        offered_rps: Some(RATE),
                        achieved_rps: offered as f64 / secs,
                        goodput_rps: succeeded as f64 / secs,
                        p50_ms: 0.0,
                        p99_ms: 0.0,
                        p999_ms: 0.0,
                        errors: offered - succeeded,
                        rejected: 0,
                        reject_p99_ms: None,
                        timed_out: 0,
                        ratio_to_baseline: Some(load_ratio),
                        ratio_to_peer_stack: None,
                        configuration: None,
                        path: None,
                        server_peak_rss_mib: None,
                        server_rss_growth_mib: None,
                        ..Row::default()
                    });
                }
            }
            println!(
                "\nretry: {RATE:.0} calls/s offered for {} s per row; upstream_load_ratio = requests that reached the upstream / calls offered\n\n\
                 | system | condition | success_ratio | upstream_load_ratio |\n|---|---|---:|---:|",
                timing.duration.as_secs()
            );
            for (system, condition, success, load) in &summary {
                println!("| {system} | {condition} | {success:.4} | {load:.3} |");
            }
            let svg = out_dir().join("retry-ratios.svg");
            write_ratio_svg(&svg, &summary)?;
            println!("wrote {}", svg.display());
            Ok(rows)
        })
    }
}

type Summary = (&'static str, &'static str, f64, f64);

/// One chart of [`write_ratio_svg`]: caption, value, y range, area.
type Panel<'a, 'b> = (
    &'static str,
    fn(&Summary) -> f64,
    f64,
    &'a plotters::prelude::DrawingArea<plotters::prelude::SVGBackend<'b>, plotters::coord::Shift>,
);

/// Success ratio and upstream load ratio per condition, one line per system.
fn write_ratio_svg(path: &std::path::Path, summary: &[Summary]) -> Result<(), String> {
    use plotters::prelude::*;
    const COLORS: [RGBColor; 5] = [
        RGBColor(120, 120, 120),
        RGBColor(214, 39, 40),
        RGBColor(31, 119, 180),
        RGBColor(44, 160, 44),
        RGBColor(148, 103, 189),
    ];
    let root = SVGBackend::new(path, (1100, 460)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let root = root
        .titled(RetryStorm.title(), ("sans-serif", 20))
        .map_err(|e| e.to_string())?;
    let (left, right) = root.split_horizontally(550);
    let condition_x = |c: &str| {
        CONDITIONS
            .iter()
            .position(|(name, _)| *name == c)
            .unwrap_or(0) as f64
    };
    let panels: [Panel<'_, '_>; 2] = [
        ("success ratio", |s| s.2, 1.05, &left),
        (
            "upstream load ratio (requests reaching it / calls)",
            |s| s.3,
            3.3,
            &right,
        ),
    ];
    for (caption, value, y_max, area) in panels {
        let mut chart = ChartBuilder::on(area)
            .caption(caption, ("sans-serif", 15))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(-0.3..2.3, 0.0..y_max)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_labels(3)
            .x_label_formatter(&|x: &f64| {
                CONDITIONS
                    .iter()
                    .enumerate()
                    .find(|(i, _)| (*i as f64 - x).abs() < 0.25)
                    .map_or_else(String::new, |(_, (name, _))| (*name).to_owned())
            })
            .draw()
            .map_err(|e| e.to_string())?;
        for (index, system) in System::ALL.iter().enumerate() {
            let color = COLORS[index % COLORS.len()];
            let points: Vec<(f64, f64)> = summary
                .iter()
                .filter(|s| s.0 == system.name())
                .map(|s| (condition_x(s.1), value(s)))
                .collect();
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
                .map_err(|e| e.to_string())?
                .label(system.name())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
                });
            chart
                .draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled())))
                .map_err(|e| e.to_string())?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperLeft)
            .draw()
            .map_err(|e| e.to_string())?;
    }
    root.present().map_err(|e| e.to_string())
}
