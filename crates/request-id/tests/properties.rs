//! Property test: whatever bytes arrive as the id, the request gets either that same id (when it
//! is valid) or a fresh one; never a panic, never an invalid value on the response.

mod common;

use std::convert::Infallible;

use common::is_uuid;
use http::{HeaderValue, Request, Response};
use palisade_request_id::{RequestId, RequestIdLayer, Validator};
use proptest::prelude::*;
use tower::{Layer, ServiceExt, service_fn};

/// The inner service answers with the id it saw in the extensions and the request header.
async fn seen(request: Request<()>) -> Result<Seen, Infallible> {
    let id = request.extensions().get::<RequestId>().cloned();
    let header = request.headers().get("x-request-id").cloned();
    Ok(Response::new((id, header)))
}

type Seen = Response<(Option<RequestId>, Option<HeaderValue>)>;

fn run(layer: &RequestIdLayer, values: &[HeaderValue]) -> (Seen,) {
    let mut request = Request::new(());
    for v in values {
        request.headers_mut().append("x-request-id", v.clone());
    }
    let service = layer.layer(service_fn(seen));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    (runtime.block_on(service.oneshot(request)).unwrap(),)
}

fn check(
    layer: &RequestIdLayer,
    validator: &Validator,
    bytes: &[Vec<u8>],
) -> Result<(), TestCaseError> {
    // Bytes that cannot be a header value cannot arrive (hyper refuses them).
    let values: Vec<HeaderValue> = bytes
        .iter()
        .filter_map(|b| HeaderValue::from_bytes(b).ok())
        .collect();
    let (response,) = run(layer, &values);
    let mut on_response = response.headers().get_all("x-request-id").iter();
    let out = on_response.next().expect("an id on every response").clone();
    prop_assert!(on_response.next().is_none(), "exactly one");
    prop_assert!(
        validator.is_valid(out.as_bytes()),
        "invalid value on the response: {out:?}"
    );
    let (id, header) = response.into_body();
    let id = id.expect("extension");
    prop_assert_eq!(id.header_value(), &out);
    prop_assert_eq!(header.expect("request header"), out.clone());
    match values.as_slice() {
        [single] if validator.is_valid(single.as_bytes()) => prop_assert_eq!(&out, single),
        _ => {
            prop_assert!(is_uuid(out.to_str().unwrap(), 7), "fresh: {out:?}");
            for v in &values {
                prop_assert_ne!(&out, v);
            }
        }
    }
    Ok(())
}

fn id_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        // Anything at all.
        proptest::collection::vec(any::<u8>(), 0..300),
        // Visible ASCII, often valid, sometimes too long.
        "[!-~]{0,140}".prop_map(String::into_bytes),
        // The default charset around the length limit.
        "[A-Za-z0-9._:-]{120,135}".prop_map(String::into_bytes),
        // Mostly valid with one odd byte.
        ("[a-z0-9-]{1,40}", any::<u8>(), "[a-z0-9-]{0,40}").prop_map(|(a, b, c)| [
            a.as_bytes(),
            &[b],
            c.as_bytes()
        ]
        .concat()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn one_header_any_bytes(bytes in id_bytes()) {
        check(&RequestIdLayer::new(), &Validator::default(), &[bytes])?;
    }

    #[test]
    fn repeated_headers(a in id_bytes(), b in id_bytes()) {
        check(&RequestIdLayer::new(), &Validator::default(), &[a, b])?;
    }

    #[test]
    fn narrow_configurations(bytes in id_bytes(), max in 36usize..=64) {
        let layer = RequestIdLayer::builder().charset("0-9a-f-").max_length(max).build().unwrap();
        let validator = Validator::new(palisade_request_id::Charset::parse("0-9a-f-").unwrap(), max).unwrap();
        check(&layer, &validator, &[bytes])?;
    }
}
