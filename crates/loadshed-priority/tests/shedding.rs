//! Shedding decisions through the service, with a scripted random source and overload level.

use std::{
    convert::Infallible,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use palisade_core::{EnforcementMode, OverloadSource, OverloadState, Priority};
use palisade_loadshed_priority::{
    LoadShedLayer, PropagatePriorityLayer, RandomSource, current_priority,
};
use tower::{Layer, ServiceExt, service_fn};

/// Always rolls `value`.
struct Fixed(f64);

impl RandomSource for Fixed {
    fn next_unit(&self) -> f64 {
        self.0
    }
}

/// Echoes the class the handler sees, from the extension and from the task-local.
async fn echo(request: Request<()>) -> Result<Response<Full<Bytes>>, Infallible> {
    let assigned = Priority::of(&request);
    assert_eq!(
        current_priority(),
        Some(assigned),
        "the task-local matches the extension"
    );
    Ok(Response::new(Full::new(Bytes::from(assigned.as_str()))))
}

fn setup(
    roll: f64,
    mode: EnforcementMode,
) -> (
    OverloadSource,
    impl FnMut(Request<()>) -> tokio::task::JoinHandle<(u16, String)>,
) {
    setup_with(roll, mode, SUSTAIN)
}

/// The default `critical_sustain`.
const SUSTAIN: Duration = Duration::from_millis(100);

fn setup_with(
    roll: f64,
    mode: EnforcementMode,
    sustain: Duration,
) -> (
    OverloadSource,
    impl FnMut(Request<()>) -> tokio::task::JoinHandle<(u16, String)>,
) {
    let state = OverloadState::new();
    let source = state.register("test limiter").unwrap();
    let layer = LoadShedLayer::builder()
        .overload_state(state)
        .random_source(Fixed(roll))
        .mode(mode)
        .critical_sustain(sustain)
        .build()
        .unwrap();
    let svc = layer.layer(service_fn(echo));
    let call = move |request: Request<()>| {
        let svc = svc.clone();
        tokio::spawn(async move {
            let response = svc.oneshot(request).await.unwrap();
            let status = response.status().as_u16();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            (status, String::from_utf8_lossy(&body).into_owned())
        })
    };
    (source, call)
}

fn get(path: &str, priority: Option<&str>) -> Request<()> {
    let mut builder = Request::get(path);
    if let Some(p) = priority {
        builder = builder.header("x-priority", p);
    }
    builder.body(()).unwrap()
}

#[tokio::test(start_paused = true)]
async fn lower_classes_are_shed_first_as_the_level_rises() {
    // A roll of 0.5: shed when the class's probability exceeds one half.
    let (limiter, mut call) = setup(0.5, EnforcementMode::Enforce);
    let classes = [
        ("sheddable", "sheddable"),
        ("sheddable_plus", "sheddable_plus"),
        ("critical", "critical"),
    ];
    let outcome =
        |results: Vec<(u16, String)>| results.into_iter().map(|(s, _)| s).collect::<Vec<_>>();
    for (level, expected) in [
        (0.3, [200, 200, 200]),
        (0.58, [503, 200, 200]), // sheddable at 0.82
        (0.68, [503, 503, 200]), // sheddable_plus at 0.8
        (0.79, [503, 503, 200]), // critical at 0.9, but the level has only just got there
    ] {
        limiter.publish(level, false);
        let mut results = Vec::new();
        for (value, _) in classes {
            results.push(call(get("/", Some(value))).await.unwrap());
        }
        assert_eq!(outcome(results), expected, "level {level}");
    }
    // Critical's part of the band for the whole interval: a sustained overload sheds it too.
    tokio::time::advance(SUSTAIN).await;
    assert_eq!(call(get("/", Some("critical"))).await.unwrap().0, 503);
    // CriticalPlus (health paths) is never shed, even past the ceiling.
    limiter.publish(1.0, true);
    assert_eq!(
        call(get("/health/live", None)).await.unwrap(),
        (200, "critical_plus".into())
    );
}

/// The in-flight level under a steady overload is a sawtooth whose peaks reach Critical's part
/// for a few milliseconds: Critical is shed only when the level stays there for
/// `critical_sustain`, while the lower classes are shed at once.
#[tokio::test(start_paused = true)]
async fn critical_is_shed_only_when_the_level_stays_in_its_part() {
    // A roll of 0: shed whenever the probability is above zero.
    let (limiter, mut call) = setup(0.0, EnforcementMode::Enforce);
    let mut status = |priority: &'static str| {
        let response = call(get("/", Some(priority)));
        async move { response.await.unwrap().0 }
    };
    let tick = Duration::from_millis(10);
    // Peaks into Critical's part (0.7 to 0.8 of the defaults) that drain within the interval.
    for _ in 0..50 {
        limiter.publish(0.75, false);
        assert_eq!(status("sheddable").await, 503);
        assert_eq!(status("sheddable_plus").await, 503);
        assert_eq!(
            status("critical").await,
            200,
            "a peak does not shed critical"
        );
        tokio::time::advance(tick).await;
        limiter.publish(0.6, false);
        assert_eq!(status("critical").await, 200);
        tokio::time::advance(tick).await;
    }
    // The level stays in Critical's part: shed once it has been there for the whole interval.
    limiter.publish(0.75, false);
    assert_eq!(status("critical").await, 200);
    tokio::time::advance(SUSTAIN.saturating_sub(tick)).await;
    assert_eq!(status("critical").await, 200, "not a whole interval yet");
    tokio::time::advance(tick).await;
    assert_eq!(
        status("critical").await,
        503,
        "sustained overload sheds critical"
    );
    // Back below the part: the interval starts again.
    limiter.publish(0.5, false);
    assert_eq!(status("sheddable").await, 503);
    limiter.publish(0.75, false);
    assert_eq!(status("critical").await, 200);
    // CriticalPlus is never shed.
    tokio::time::advance(SUSTAIN).await;
    assert_eq!(call(get("/health/live", None)).await.unwrap().0, 200);
}

#[tokio::test(start_paused = true)]
async fn a_zero_critical_sustain_sheds_critical_on_the_instantaneous_level() {
    let (limiter, mut call) = setup_with(0.0, EnforcementMode::Enforce, Duration::ZERO);
    limiter.publish(0.75, false);
    assert_eq!(call(get("/", Some("critical"))).await.unwrap().0, 503);
}

#[tokio::test]
async fn a_limiter_that_is_shedding_counts_as_the_ceiling() {
    let (limiter, mut call) = setup(0.99, EnforcementMode::Enforce);
    limiter.publish(0.1, true);
    assert_eq!(call(get("/", Some("critical"))).await.unwrap().0, 503);
    limiter.publish(0.1, false);
    assert_eq!(call(get("/", Some("critical"))).await.unwrap().0, 200);
}

#[tokio::test]
async fn shed_responses_name_the_class() {
    let (limiter, mut call) = setup(0.0, EnforcementMode::Enforce);
    limiter.publish(0.7, false);
    let (status, body) = call(get("/", Some("sheddable"))).await.unwrap();
    assert_eq!(status, 503);
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["priority"], "sheddable");
    assert_eq!(doc["reason"], "load_shed");
    assert_eq!(doc["status"], 503);
}

#[tokio::test]
async fn observe_only_sheds_nothing() {
    let (limiter, mut call) = setup(0.0, EnforcementMode::ObserveOnly);
    limiter.publish(1.0, true);
    assert_eq!(
        call(get("/", Some("sheddable"))).await.unwrap(),
        (200, "sheddable".into())
    );
}

#[tokio::test]
async fn the_class_is_propagated_to_outgoing_requests() {
    let seen = Arc::new(AtomicUsize::new(0));
    let seen_by_upstream = Arc::clone(&seen);
    // An "upstream" client service that records the header it receives.
    let client = PropagatePriorityLayer::new().layer(service_fn(move |request: Request<()>| {
        let seen = Arc::clone(&seen_by_upstream);
        async move {
            let header = request
                .headers()
                .get("x-priority")
                .map(|v| v.to_str().unwrap().to_owned());
            if header.as_deref() == Some("sheddable_plus") {
                seen.fetch_add(1, Ordering::SeqCst);
            }
            Ok::<_, Infallible>(header)
        }
    }));
    let server = LoadShedLayer::builder()
        .overload_state(OverloadState::new())
        .build()
        .unwrap()
        .layer(service_fn(move |_request: Request<()>| {
            let client = client.clone();
            async move {
                // A handler calling another service: the class travels with the call.
                let forwarded = client.oneshot(Request::new(())).await.unwrap();
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(
                    forwarded.unwrap_or_default(),
                ))))
            }
        }));
    let response = server
        .oneshot(get("/", Some("sheddable-plus")))
        .await
        .unwrap();
    assert_eq!(
        response.into_body().collect().await.unwrap().to_bytes(),
        "sheddable_plus"
    );
    assert_eq!(seen.load(Ordering::SeqCst), 1);
}
