//! Each refusal is one security event, at the documented target and level, with the path
//! escaped and truncated, the query left out and the request id in.

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use palisade_core::RequestId;
use palisade_request_guard::RequestGuardLayer;
use palisade_testkit::LogCapture;
use tower::{Layer, Service, ServiceExt, service_fn};

async fn logged(layer: RequestGuardLayer, targets: &[String]) -> String {
    let captured = LogCapture::default();
    let _default = captured.install(tracing::Level::DEBUG);
    let mut svc = layer.layer(service_fn(|_: Request<()>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
    }));
    for (i, target) in targets.iter().enumerate() {
        let mut request = Request::get(target.as_str()).body(()).unwrap();
        let id = RequestId::new(&format!("req-{i}")).unwrap();
        request.extensions_mut().insert(id);
        svc.ready().await.unwrap().call(request).await.unwrap();
    }
    captured.text()
}

#[tokio::test(flavor = "current_thread")]
async fn one_escaped_truncated_line_per_refusal() {
    let long = format!("/{}/%2e%2e", "x".repeat(300));
    let targets = [
        "/ok".to_owned(),
        "/a\\b\"c?token=secret".to_owned(),
        long,
        "/fine".to_owned(),
    ];
    let out = logged(RequestGuardLayer::new(), &targets).await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].contains("INFO palisade::security"), "{}", lines[0]);
    assert!(
        lines[0].contains("event=\"request_refused\""),
        "{}",
        lines[0]
    );
    assert!(lines[0].contains("reason=\"backslash\""), "{}", lines[0]);
    assert!(lines[0].contains("status=400"), "{}", lines[0]);
    assert!(lines[0].contains("request_id=\"req-1\""), "{}", lines[0]);
    assert!(
        !lines[0].contains("secret"),
        "the query stays out: {}",
        lines[0]
    );
    assert!(lines[0].contains("/a\\x5cb\\x22c"), "{}", lines[0]);
    assert!(lines[1].contains("reason=\"dot_segment\""), "{}", lines[1]);
    assert!(lines[1].contains("...(+"), "not truncated: {}", lines[1]);
    assert!(
        !lines[1].contains(&"x".repeat(200)),
        "not truncated: {}",
        lines[1]
    );
}

#[tokio::test(flavor = "current_thread")]
async fn observe_only_logs_at_info() {
    let layer = RequestGuardLayer::builder().observe_only().build().unwrap();
    let out = logged(layer, &["/a/../b".to_owned()]).await;
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains("INFO palisade::security"), "{out}");
    assert!(out.contains("event=\"request_refused_observed\""), "{out}");
    assert!(out.contains("observe-only"), "{out}");
}

#[tokio::test(flavor = "current_thread")]
async fn a_flood_of_refusals_writes_at_most_ten_events_a_second() {
    let targets: Vec<String> = (0..25).map(|i| format!("/a/../{i}")).collect();
    let out = logged(RequestGuardLayer::new(), &targets).await;
    // Each refusal is still counted by the metric; only the lines are capped.
    assert_eq!(out.lines().count(), 10, "{out}");
}
