//! The example's routes, served for real on 127.0.0.1 and called with a real client.

use palisade_testkit::{Client, TestServer};
use production_server::{AppState, app};

async fn start() -> (TestServer, Client, AppState) {
    let state = AppState::default();
    (
        TestServer::start(app(state.clone())).await,
        Client::new(),
        state,
    )
}

#[tokio::test]
async fn index_and_items() {
    let (server, client, _) = start().await;
    let index = client.get(&server.url("/")).await;
    assert_eq!(index.status, 200);
    assert!(index.text().contains("/api/items"));

    let items = client.get(&server.url("/api/items")).await;
    assert_eq!(items.status, 200);
    assert_eq!(items.json().as_array().map(Vec::len), Some(3));

    let one = client.get(&server.url("/api/items/2")).await;
    assert_eq!(one.json()["name"], "gate hinge");

    let missing = client.get(&server.url("/api/items/99")).await;
    assert_eq!(missing.status, 404);
    assert_eq!(
        missing.header("content-type"),
        Some("application/problem+json")
    );
    assert_eq!(missing.json()["detail"], "no item with id 99");

    let not_a_number = client.get(&server.url("/api/items/abc")).await;
    assert_eq!(not_a_number.status, 400);
    server.shutdown().await;
}

#[tokio::test]
async fn slow_is_bounded() {
    let (server, client, _) = start().await;
    let ok = client.get(&server.url("/api/slow?ms=20")).await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.json()["slept_ms"], 20);
    let too_long = client.get(&server.url("/api/slow?ms=10001")).await;
    assert_eq!(too_long.status, 400);
    let junk = client.get(&server.url("/api/slow?ms=-1")).await;
    assert_eq!(junk.status, 400);
    server.shutdown().await;
}

#[tokio::test]
async fn flaky_fails_and_heals_on_demand() {
    let (server, client, state) = start().await;
    assert_eq!(client.get(&server.url("/api/flaky")).await.status, 200);

    assert_eq!(
        client
            .post(&server.url("/admin/dependency/fail"))
            .await
            .status,
        200
    );
    assert!(state.dependency.is_failing());
    let failed = client.get(&server.url("/api/flaky")).await;
    assert_eq!(failed.status, 502);
    assert_eq!(failed.json()["detail"], "the dependency is failing");
    let status = client.get(&server.url("/admin/status")).await.json();
    assert_eq!(status["dependency"]["status"], "failing");
    assert_eq!(status["dependency"]["failures"], 1);

    assert_eq!(
        client
            .post(&server.url("/admin/dependency/heal"))
            .await
            .status,
        200
    );
    assert_eq!(client.get(&server.url("/api/flaky")).await.status, 200);
    assert_eq!(
        client.get(&server.url("/admin/status")).await.json()["dependency"]["status"],
        "healthy"
    );

    // Admin actions are POST only.
    assert_eq!(
        client
            .get(&server.url("/admin/dependency/fail"))
            .await
            .status,
        405
    );
    server.shutdown().await;
}
