//! Property: a value under a redacted query key never reaches a log line or a span field, whatever
//! the key's case and wherever it sits in the query, while the values next to it do (so the
//! capture is real); nor does a sensitive header's value, sent beside it. (Headers reach spans only
//! through the `request_headers` allowlist, which refuses sensitive names when the layer is built:
//! `sensitive_headers_are_never_recorded_and_the_list_grows` in `src/config.rs`.)

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use palisade_telemetry::{AccessLogConfig, DEFAULT_REDACTED_QUERY_KEYS, TelemetryLayer};
use palisade_testkit::LogCapture;
use proptest::prelude::*;
use tower::{Layer, ServiceExt, service_fn};
use tracing_subscriber::{Registry, fmt::format::FmtSpan, layer::SubscriberExt};

/// Everything logged for one request: its access line, and its server span's fields (written
/// when the span closes).
fn logged(uri: &str, headers: &[(&str, &str)]) -> String {
    let captured = LogCapture::default();
    let writer = captured.clone();
    let subscriber = Registry::default().with(
        tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_span_events(FmtSpan::CLOSE)
            .with_writer(move || writer.clone()),
    );
    let layer = TelemetryLayer::builder()
        .record_query(true)
        .request_header("x-forwarded-for")
        .sensitive_header("x-session-token")
        .access_log(AccessLogConfig::on())
        .build()
        .unwrap();
    let mut request = Request::get(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Full::<Bytes>::default()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    tracing::subscriber::with_default(subscriber, || {
        rt.block_on(async {
            let svc = layer.layer(service_fn(|_: Request<Full<Bytes>>| async {
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
            }));
            let response = svc.oneshot(request).await.unwrap();
            response.into_body().collect().await.unwrap();
        });
    });
    captured.text()
}

/// A key of the redaction list in a random case, some of its characters percent-encoded (as a
/// client may send them and the application's parser decodes them).
fn sensitive_key() -> impl Strategy<Value = String> {
    (
        proptest::sample::select(DEFAULT_REDACTED_QUERY_KEYS.to_vec()),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(|(key, case, encode)| {
            key.chars()
                .enumerate()
                .map(|(i, c)| {
                    let c = if case >> (i % 64) & 1 == 1 {
                        c.to_ascii_uppercase()
                    } else {
                        c
                    };
                    if encode >> (i % 64) & 1 == 1 {
                        format!("%{:02X}", u32::from(c))
                    } else {
                        c.to_string()
                    }
                })
                .collect()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn redacted_values_never_reach_logs_or_spans(
        key in sensitive_key(),
        secret in "[a-z0-9]{12,24}",
        plain in "[a-z0-9]{12,24}",
        before in 0usize..3,
        after in 0usize..3,
    ) {
        let secret = format!("zq{secret}");
        let plain = format!("pl{plain}");
        let mut pairs: Vec<String> = (0..before).map(|i| format!("page{i}={plain}")).collect();
        pairs.push(format!("{key}={secret}"));
        pairs.extend((0..after).map(|i| format!("sort{i}={plain}")));
        pairs.push(format!("q={plain}"));
        let uri = format!("/search?{}", pairs.join("&"));
        let out = logged(
            &uri,
            &[
                ("x-session-token", &secret),
                ("authorization", &format!("Bearer {secret}")),
                ("x-forwarded-for", "198.51.100.7"),
            ],
        );
        prop_assert!(!out.contains(&secret), "{secret} leaked: {out}");
        prop_assert!(out.contains(&plain), "the capture saw the plain values: {out}");
        prop_assert!(out.contains("palisade::access"), "the access line was written: {out}");
    }
}
