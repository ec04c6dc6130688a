//! The corpora in `tests/corpus/`: every hostile target refused with its reason and never
//! reaching a handler; every legitimate target served.

mod support;

use std::sync::atomic::Ordering;

use axum::{Router, body::Body};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::BodyExt;
use palisade_request_guard::{RequestGuardLayer, Verdict};
use support::{corpus, counting_app};
use tower::{Layer, ServiceExt};

#[test]
fn every_hostile_target_is_refused_for_its_reason() {
    let guard = RequestGuardLayer::new();
    let cases = corpus("hostile.txt");
    assert!(cases.len() >= 100, "only {} hostile cases", cases.len());
    let mut wrong = Vec::new();
    for case in &cases {
        match (guard.check(&Method::GET, &case.target), case.expected) {
            (Verdict::Reject(got), Some(expected)) if got != expected => {
                wrong.push(format!("{}: {got}, expected {expected}", case.shown()));
            }
            (Verdict::Reject(_), _) => {}
            (verdict, _) => wrong.push(format!("{}: {verdict:?}", case.shown())),
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn every_legitimate_target_passes() {
    let guard = RequestGuardLayer::new();
    let cases = corpus("legit.txt");
    assert!(cases.len() >= 40, "only {} legitimate cases", cases.len());
    let refused: Vec<_> = cases
        .iter()
        .filter_map(|case| match guard.check(&Method::GET, &case.target) {
            Verdict::Pass => None,
            verdict => Some(format!("{}: {verdict:?}", case.shown())),
        })
        .collect();
    assert!(refused.is_empty(), "{}", refused.join("\n"));
}

/// The guard outside the router, as the crate docs place it.
fn guarded() -> (Router, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let (app, hits) = counting_app();
    let app = Router::new().fallback_service(RequestGuardLayer::new().layer(app));
    (app, hits)
}

fn request(target: &[u8]) -> Option<Request<Body>> {
    let uri = Uri::try_from(target).ok()?;
    Some(Request::get(uri).body(Body::empty()).unwrap())
}

#[tokio::test]
async fn no_hostile_target_reaches_a_handler() {
    let (app, hits) = guarded();
    let mut sent = 0;
    for case in corpus("hostile.txt") {
        // Targets `http::Uri` cannot hold are covered by the raw-socket test.
        let Some(request) = request(&case.target) else {
            continue;
        };
        sent += 1;
        let response = app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        assert!(status.is_client_error(), "{}: {status}", case.shown());
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{}",
            case.shown()
        );
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
        if let Some(expected) = case.expected {
            // An absolute-form target is checked by its path, which may fail for another reason.
            if case.target.starts_with(b"/") {
                assert_eq!(doc["reason"], expected.as_str(), "{}", case.shown());
            }
        }
        assert_eq!(doc["status"], status.as_u16());
    }
    assert!(sent >= 100, "only {sent} hostile targets fit an http::Uri");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "a hostile target reached a handler"
    );
}

#[tokio::test]
async fn every_legitimate_target_reaches_the_handler() {
    let (app, hits) = guarded();
    let cases = corpus("legit.txt");
    for case in &cases {
        let request = request(&case.target).unwrap_or_else(|| panic!("{}", case.shown()));
        let response = app.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{}", case.shown());
    }
    assert_eq!(hits.load(Ordering::SeqCst), cases.len());
}
