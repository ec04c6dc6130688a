//! Untrusted priority headers: whatever the bytes, no panic and no class above the default.

use std::convert::Infallible;

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use http_body_util::Full;
use palisade_core::{OverloadState, Priority};
use palisade_loadshed_priority::LoadShedLayer;
use proptest::prelude::*;
use tower::{Layer, ServiceExt, service_fn};

fn classify(value: HeaderValue, default: Priority) -> Priority {
    let layer = LoadShedLayer::builder()
        .overload_state(OverloadState::new())
        .default_priority(default)
        .build()
        .unwrap();
    let svc = layer.layer(service_fn(|request: Request<()>| async move {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(
            Priority::of(&request).as_str(),
        ))))
    }));
    let mut request = Request::get("/api").body(()).unwrap();
    request.headers_mut().insert("x-priority", value);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let response = runtime.block_on(svc.oneshot(request)).unwrap();
    let body = runtime
        .block_on(http_body_util::BodyExt::collect(response.into_body()))
        .unwrap()
        .to_bytes();
    std::str::from_utf8(&body).unwrap().parse().unwrap()
}

proptest! {
    #[test]
    fn arbitrary_header_bytes_never_raise_an_untrusted_class(
        bytes in proptest::collection::vec(any::<u8>(), 0..300),
        default in 0usize..4,
    ) {
        let default = Priority::ALL[default];
        if let Ok(value) = HeaderValue::from_bytes(&bytes) {
            prop_assert!(classify(value, default) <= default);
        }
    }

    #[test]
    fn class_names_with_noise_never_raise_either(
        name in prop::sample::select(vec!["critical_plus", "CRITICAL-PLUS", " critical_plus ", "critical", "high"]),
        default in 0usize..4,
    ) {
        let default = Priority::ALL[default];
        prop_assert!(classify(HeaderValue::from_str(name).unwrap(), default) <= default);
    }
}
