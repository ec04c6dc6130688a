//! The operations listener and the admin token: what operators reach, and where.

use std::time::Duration;

use axum::{
    Router,
    routing::{get, post},
};
use palisade::{AdminTokenLayer, PalisadeConfig, Stack, core::OverloadState};
use palisade_testkit::{Client, raw_exchange};
use support::Running;
use tokio::{io::AsyncWriteExt, net::TcpStream};

mod support;

/// A loopback port nobody listens on now (the operations listener binds its own address).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn stack(toml: &str) -> Stack {
    let mut config = PalisadeConfig::from_toml(toml).unwrap();
    config.server.drain.propagation_delay = Duration::ZERO;
    let stack = Stack::builder()
        .config(config)
        .overload_state(OverloadState::new())
        .build()
        .unwrap();
    stack.health().mark_started();
    stack
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_metrics_and_admin_answer_on_the_ops_port_while_the_public_port_is_full() {
    let ops_port = free_port();
    let stack = stack(&format!(
        r#"
        [server.ops]
        addr = "127.0.0.1:{ops_port}"
        public_probes = false
        [server.connections]
        max_connections = 5
        high_water = 3
        low_water = 1
        "#
    ));
    let admin = Router::new()
        .route("/metrics", get(|| async { "# metrics" }))
        .route("/admin/reset", post(|| async { "reset" }));
    let server = stack.server().ops(stack.ops(admin));
    let public = stack.apply(Router::new().route("/", get(|| async { "hello" })));
    let running = Running::start(public, server).await;

    // Fill the public listener: idle connections up to its high-water mark. Three, so that the
    // pooled client below, which may open a second connection while its first is on its way back
    // to the pool, stays under the mark once they are gone.
    let mut idle = Vec::new();
    for _ in 0..3 {
        let mut stream = TcpStream::connect(running.addr).await.unwrap();
        stream.write_all(b"G").await.unwrap();
        idle.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let refused = raw_exchange(
        running.addr,
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");

    let ops = format!("http://127.0.0.1:{ops_port}");
    let client = Client::new();
    // Answered, not timed out: readiness reports the full listener (overload fails readiness,
    // so the balancer sends new clients elsewhere), liveness keeps the pod alive.
    let ready = client.get(&format!("{ops}/health/ready")).await;
    assert_eq!(ready.status, 503);
    assert_eq!(ready.json()["status"], "fail");
    assert_eq!(client.get(&format!("{ops}/health/live")).await.status, 200);
    assert_eq!(client.get(&format!("{ops}/metrics")).await.status, 200);
    let reset = raw_exchange(
        format!("127.0.0.1:{ops_port}").parse().unwrap(),
        b"POST /admin/reset HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(reset.starts_with("HTTP/1.1 200"), "{reset}");
    drop(idle);

    // Once the server has seen the idle connections close it is under its low-water mark again.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !raw_exchange(
        running.addr,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await
    .starts_with("HTTP/1.1 200")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the public port never accepted again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The public port has neither the probes (left to the ops port) nor the admin routes.
    assert_eq!(client.get(&format!("{ops}/health/ready")).await.status, 200);
    assert_eq!(client.get(&running.url("/health/ready")).await.status, 404);
    assert_eq!(client.get(&running.url("/metrics")).await.status, 404);
}

#[tokio::test]
async fn an_ops_address_without_an_app_is_an_error() {
    let server = palisade::Server::new(
        PalisadeConfig::from_toml(&format!(
            "[server.ops]\naddr = \"127.0.0.1:{}\"",
            free_port()
        ))
        .unwrap()
        .server,
    )
    .overload_state(OverloadState::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = palisade::serve_with_shutdown(listener, Router::new(), server, async {})
        .await
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("ops.addr"), "{err}");
}

#[tokio::test]
async fn admin_routes_on_the_public_port_need_the_token() {
    let stack = stack("");
    let token = "0123456789abcdef-admin";
    let guarded = |layer: AdminTokenLayer| {
        Router::new()
            .route("/admin/reset", post(|| async { "reset" }))
            .route_layer(layer)
    };
    let app = stack.apply(
        Router::new()
            .route("/", get(|| async { "hello" }))
            .nest("/on", guarded(AdminTokenLayer::new(Some(token.into()))))
            .nest("/off", guarded(AdminTokenLayer::new(None))),
    );
    let running = Running::start(app, stack.server()).await;
    let send = |path: &str, auth: Option<&str>| {
        let auth = auth.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n{auth}\r\n"
        );
        let addr = running.addr;
        async move { raw_exchange(addr, request.as_bytes(), Duration::from_secs(5)).await }
    };
    let missing = send("/on/admin/reset", None).await;
    assert!(missing.starts_with("HTTP/1.1 401"), "{missing}");
    assert!(missing.contains("www-authenticate: Bearer"));
    assert!(missing.contains("admin_unauthorized"));
    let wrong = send("/on/admin/reset", Some("Bearer 0123456789abcdef-admiN")).await;
    assert!(wrong.starts_with("HTTP/1.1 401"), "{wrong}");
    let right = send("/on/admin/reset", Some(&format!("Bearer {token}"))).await;
    assert!(right.starts_with("HTTP/1.1 200"), "{right}");
    let off = send("/off/admin/reset", Some(&format!("Bearer {token}"))).await;
    assert!(off.starts_with("HTTP/1.1 404"), "{off}");
    assert!(off.contains("admin_disabled"));
}
