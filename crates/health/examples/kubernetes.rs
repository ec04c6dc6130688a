//! A server wired the way a Kubernetes pod needs it: probes outside the limiter, one readiness
//! check, `mark_started` once serving is possible, and the drain sequence on SIGTERM or Ctrl-C
//! (a second Ctrl-C skips the waiting).
//!
//! ```text
//! cargo run -p palisade-health --example kubernetes
//! curl -i localhost:8080/health/ready
//! curl -X POST localhost:8080/dependency/fail; curl localhost:8080/health/ready
//! ```
//!
//! Environment: `PALISADE_ADDR` (default `127.0.0.1:8080`).

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    extract::State,
    routing::{get, post},
};
use palisade_concurrency_limit_hysteresis::{ConcurrencyLimitLayer, Watermark};
use palisade_core::OverloadState;
use palisade_health::{Check, Drain, DrainConfig, DrainOutcome, HealthLayer};

/// Stands in for a remote dependency that can break.
#[derive(Clone, Default)]
struct Dependency(Arc<AtomicBool>);

impl Dependency {
    async fn ping(&self) -> Result<(), &'static str> {
        tokio::time::sleep(Duration::from_millis(5)).await;
        if self.0.load(Ordering::Relaxed) {
            Err("dependency unreachable")
        } else {
            Ok(())
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let overload = OverloadState::global();
    let dependency = Dependency::default();

    // Limiter inside, publishing into the overload state that readiness reads.
    let limit = ConcurrencyLimitLayer::builder()
        .max_in_flight(100)
        .high_water(Watermark::fraction(0.8))
        .low_water(Watermark::fraction(0.6))
        .overload_state(overload.clone())
        .build()?;
    let check = dependency.clone();
    let health = HealthLayer::builder()
        .overload_state(overload.clone())
        .include_details(true)
        .readiness_check(
            Check::from_fn("dependency", move || {
                let dependency = check.clone();
                async move { dependency.ping().await }
            })
            .timeout(Duration::from_millis(500))
            .on_demand(Duration::from_secs(2))
            // Shared by every replica: report it, but do not take them all out of rotation.
            .non_critical(),
        )
        .build()?;
    let drain = Drain::new(health.handle(), DrainConfig::default())?;

    let app = Router::new()
        .route("/", get(|| async { "hello\n" }))
        .route(
            "/dependency/fail",
            post(|State(d): State<Dependency>| async move { d.0.store(true, Ordering::Relaxed) }),
        )
        .route(
            "/dependency/heal",
            post(|State(d): State<Dependency>| async move { d.0.store(false, Ordering::Relaxed) }),
        )
        .with_state(dependency)
        .layer(limit)
        .layer(health.clone());

    let addr = std::env::var("PALISADE_ADDR").unwrap_or_else(|_| "127.0.0.1:8080".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    // Listening and configured: the startup probe passes, readiness may.
    health.handle().mark_started();

    // A second Ctrl-C during the drain skips the remaining delays.
    let expedite = drain.clone();
    tokio::spawn(async move {
        expedite.health().draining().await;
        let _ = tokio::signal::ctrl_c().await;
        expedite.expedite();
    });

    let server = axum::serve(listener, app).with_graceful_shutdown(drain.signal(shutdown_signal()));
    match drain.run(server).await? {
        DrainOutcome::Drained => println!("drained"),
        DrainOutcome::DeadlineExceeded => println!("drain deadline passed; exiting"),
    }
    Ok(())
}
