//! A real axum server on 127.0.0.1:0 behind the guard, driven over a plain `TcpStream`, because
//! most hostile targets (raw control bytes, invalid UTF-8, absolute forms) and every smuggling
//! framing cannot be expressed through an HTTP client's URI and header types.

mod support;

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{Router, body::Bytes, routing::post};
use palisade_request_guard::RequestGuardLayer;
use support::{corpus, counting_app};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use tower::Layer;

/// Serves `app` behind the default guard, placed outside the router.
async fn serve(app: Router) -> SocketAddr {
    serve_with(app, RequestGuardLayer::new()).await
}

async fn serve_with(app: Router, guard: RequestGuardLayer) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().fallback_service(guard.layer(app));
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// Sends `raw` and reads until the server closes the connection.
async fn exchange(addr: SocketAddr, raw: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(raw).await.unwrap();
    let mut response = Vec::new();
    let read =
        tokio::time::timeout(Duration::from_secs(3), stream.read_to_end(&mut response)).await;
    assert!(
        read.is_ok(),
        "the server did not close the connection; read so far: {:?}",
        String::from_utf8_lossy(&response)
    );
    String::from_utf8_lossy(&response).into_owned()
}

fn get(target: &[u8]) -> Vec<u8> {
    let mut raw = b"GET ".to_vec();
    raw.extend_from_slice(target);
    raw.extend_from_slice(b" HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    raw
}

/// The status code of the first status line.
fn status(response: &str) -> u16 {
    response
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {response:?}"))
}

fn header<'a>(response: &'a str, name: &str) -> Option<&'a str> {
    let head = response.split("\r\n\r\n").next()?;
    head.lines().skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[tokio::test]
async fn every_hostile_target_gets_a_4xx_and_reaches_no_handler() {
    let (app, hits) = counting_app();
    let addr = serve(app).await;
    let cases = corpus("hostile.txt");
    for case in &cases {
        let response = exchange(addr, &get(&case.target)).await;
        let code = status(&response);
        assert!((400..500).contains(&code), "{}: {code}", case.shown());
    }
    assert!(cases.len() >= 100);
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "a hostile target reached a handler"
    );
}

#[tokio::test]
async fn legitimate_targets_are_served() {
    let (app, hits) = counting_app();
    let addr = serve(app).await;
    let cases = corpus("legit.txt");
    for case in &cases {
        let response = exchange(addr, &get(&case.target)).await;
        assert_eq!(status(&response), 200, "{}", case.shown());
    }
    assert_eq!(hits.load(Ordering::SeqCst), cases.len());
}

#[tokio::test]
async fn refusals_name_their_reason_and_never_echo_the_target() {
    let (app, _) = counting_app();
    let addr = serve(app).await;
    let response = exchange(addr, &get(b"/%2e%2e/%3Cscript%3Ealert(1)%3C/script%3E")).await;
    assert_eq!(status(&response), 400);
    assert_eq!(
        header(&response, "content-type"),
        Some("application/problem+json")
    );
    let body = response.split("\r\n\r\n").nth(1).unwrap();
    let doc: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(doc["reason"], "dot_segment");
    assert_eq!(doc["type"], "urn:palisade:problem:dot_segment");
    assert!(!response.contains("script"), "{response}");
}

#[tokio::test]
async fn length_limits_answer_414() {
    let (app, hits) = counting_app();
    let addr = serve(app).await;
    let path = format!("/{}", "a".repeat(8192));
    assert_eq!(status(&exchange(addr, &get(path.as_bytes())).await), 414);
    let query = format!("/?q={}", "a".repeat(4100));
    assert_eq!(status(&exchange(addr, &get(query.as_bytes())).await), 414);
    // Beyond hyper's own limit, hyper answers before the guard runs.
    let huge = format!("/{}", "a".repeat(70_000));
    assert_eq!(status(&exchange(addr, &get(huge.as_bytes())).await), 414);
    assert_eq!(hits.load(Ordering::SeqCst), 0);
    let fits = format!("/{}", "a".repeat(8191));
    assert_eq!(status(&exchange(addr, &get(fits.as_bytes())).await), 200);
}

#[tokio::test]
async fn unknown_methods_get_501_with_allow_and_the_router_still_answers_405() {
    let (app, hits) = counting_app();
    let addr = serve(app).await;
    for method in ["TRACE", "CONNECT", "PROPFIND", "FOO", "get"] {
        let raw = format!("{method} / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        let response = exchange(addr, raw.as_bytes()).await;
        assert_eq!(status(&response), 501, "{method}: {response}");
        assert_eq!(
            header(&response, "allow"),
            Some("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
            "{method}"
        );
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0);
    // An allowed method on a route that does not take it: axum's router answers, with the
    // route's own `Allow`.
    let raw =
        b"POST /only-get HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    let response = exchange(addr, raw).await;
    assert_eq!(status(&response), 405, "{response}");
    let allow = header(&response, "allow").expect("Allow on 405");
    assert!(allow.contains("GET") && allow.contains("HEAD"), "{allow}");
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn double_slashes_can_redirect_with_308() {
    let (app, hits) = counting_app();
    let guard = RequestGuardLayer::builder()
        .double_slashes(palisade_request_guard::DoubleSlash::Redirect)
        .build()
        .unwrap();
    let addr = serve_with(app, guard).await;
    let response = exchange(addr, &get(b"//evil.com//a?x=1")).await;
    assert_eq!(status(&response), 308, "{response}");
    assert_eq!(header(&response, "location"), Some("/evil.com/a?x=1"));
    // Other problems are still refused, not redirected.
    assert_eq!(status(&exchange(addr, &get(b"//a/../b")).await), 400);
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn observe_only_serves_hostile_targets() {
    let (app, hits) = counting_app();
    let guard = RequestGuardLayer::builder().observe_only().build().unwrap();
    let addr = serve_with(app, guard).await;
    assert_eq!(status(&exchange(addr, &get(b"/a/%2e%2e/b")).await), 200);
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

/// An application that counts hits per path, for the smuggling cases: the smuggled request
/// targets `/smuggled`, which must never run.
fn smuggling_app() -> (Router, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let (front, smuggled) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (f, s) = (front.clone(), smuggled.clone());
    let app = Router::new()
        .route(
            "/",
            post(move |headers: http::HeaderMap, body: Bytes| {
                f.fetch_add(1, Ordering::SeqCst);
                async move {
                    // What the handler was told about the framing, for the assertions.
                    format!(
                        "cl={:?} body={:?}",
                        headers.get("content-length"),
                        String::from_utf8_lossy(&body)
                    )
                }
            }),
        )
        .fallback(move || {
            s.fetch_add(1, Ordering::SeqCst);
            async { "smuggled" }
        });
    (app, front, smuggled)
}

#[tokio::test]
async fn ambiguous_framings_are_refused_by_hyper_with_400() {
    let (app, front, smuggled) = smuggling_app();
    let addr = serve(app).await;
    let cases: &[&[u8]] = &[
        // Two different Content-Lengths.
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 30\r\n\r\nhelloGET /smuggled HTTP/1.1\r\n\r\n",
        // One header with two values.
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5, 30\r\n\r\nhelloGET /smuggled HTTP/1.1\r\n\r\n",
        // Obsolete line folding.
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nX-Folded: a\r\n b\r\n\r\nhello",
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
        // Transfer-Encoding whose last coding is not chunked, or obfuscated.
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, identity\r\nContent-Length: 5\r\n\r\nhello",
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: xchunked\r\nContent-Length: 5\r\n\r\nhello",
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\nhello",
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
        // Transfer-Encoding on HTTP/1.0.
        b"POST / HTTP/1.0\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        // A malformed Content-Length.
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: +5\r\n\r\nhello",
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 0x05\r\n\r\nhello",
        // Bad chunk sizes.
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        // Whitespace and bare CR in the request line or header names.
        b"GET /a b HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET /a\rb HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\nX Bad: 1\r\n\r\n",
    ];
    for raw in cases {
        let response = exchange(addr, raw).await;
        assert!(
            response.starts_with("HTTP/1.1 400 "),
            "{}: {response:?}",
            raw.escape_ascii()
        );
    }
    assert_eq!(
        front.load(Ordering::SeqCst),
        0,
        "a framing attack reached a handler"
    );
    assert_eq!(smuggled.load(Ordering::SeqCst), 0, "a smuggled request ran");
}

/// hyper (1.11 and later) does not refuse Content-Length together with Transfer-Encoding: it
/// frames the body by Transfer-Encoding, drops the Content-Length header, and closes the
/// connection after the response. The request is served, but the bytes a Content-Length-framing
/// front end would have read as the next request are never parsed, so nothing is smuggled.
#[tokio::test]
async fn content_length_with_transfer_encoding_cannot_smuggle_a_request() {
    let (app, front, smuggled) = smuggling_app();
    let addr = serve(app).await;
    let smuggle = "GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n";
    let cases = [
        // CL.TE: a Content-Length-framing front end forwards all of it as one request; framed by
        // Transfer-Encoding, the body ends at `0` and the rest would be a second request.
        format!(
            "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggle}",
            5 + smuggle.len()
        ),
        // TE.CL: a Transfer-Encoding-framing front end forwards the whole chunk; framed by the
        // Content-Length of 4, the chunk's content would be a second request.
        format!(
            "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n{:x}\r\n{smuggle}\r\n0\r\n\r\n",
            smuggle.len()
        ),
    ];
    for raw in &cases {
        let response = exchange(addr, raw.as_bytes()).await;
        assert!(response.starts_with("HTTP/1.1 200 "), "{response:?}");
        assert!(
            response.contains("cl=None"),
            "the handler saw a Content-Length: {response}"
        );
        assert_eq!(
            header(&response, "connection"),
            Some("close"),
            "keep-alive after an ambiguous framing: {response}"
        );
        assert_eq!(response.matches("HTTP/1.1 ").count(), 1, "{response}");
    }
    assert_eq!(front.load(Ordering::SeqCst), cases.len());
    assert_eq!(smuggled.load(Ordering::SeqCst), 0, "a smuggled request ran");
}
