//! Two processes of the real binary share their `/api` limit through a real Redis
//! (`PALISADE_RATE_LIMIT__REDIS__URL`): together they admit one client's burst once, not once
//! each. With Redis killed they keep answering, each limiting on its own, readiness warns and
//! the metric says so; with Redis back the shared limit returns without a restart.

use std::time::{Duration, Instant};

use palisade_testkit::{Client, redis::RedisServer};
use support::start_binary_with_ops_and;

mod support;

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn two_replicas_share_one_limit_and_survive_a_redis_outage() {
    let mut redis = RedisServer::start().expect("redis-server (cargo xtask ci installs it)");
    let url = redis.url();
    // A 250 ms deadline instead of 5 ms: a healthy call slowed by a loaded test machine (two
    // servers, Redis and this test on two cores) would be decided locally and change the shared
    // count asserted below.
    let env = [
        ("PALISADE_RATE_LIMIT__REDIS__URL", url.as_str()),
        ("PALISADE_RATE_LIMIT__REDIS__DEADLINE", "0.25"),
    ];
    let (_a, base_a, ops_a, _logs_a) = start_binary_with_ops_and(&env).await;
    let (_b, base_b, _ops_b, _logs_b) = start_binary_with_ops_and(&env).await;
    let client = Client::new();

    // The example allows 20 per second with bursts of 40 per client. One client, both
    // replicas, as fast as it can: one burst in all, plus what refills meanwhile.
    let started = Instant::now();
    let mut admitted = 0;
    for i in 0..120 {
        let base = if i % 2 == 0 { &base_a } else { &base_b };
        let response = client.get(&format!("{base}/api/items")).await;
        assert!(
            [200, 429].contains(&response.status.as_u16()),
            "{}",
            response.status
        );
        admitted += usize::from(response.status == 200);
    }
    // One request refills every 50 ms.
    let refilled = usize::try_from(started.elapsed().as_millis() / 50 + 1).unwrap_or(usize::MAX);
    assert!(
        (40..=40 + refilled + 1).contains(&admitted),
        "admitted {admitted}: one shared burst of 40 (+{refilled} refilled), not 40 per replica"
    );

    // Redis goes away: every request is still answered, limited locally, without waiting on
    // Redis (a dead connection would cost seconds; a busy machine adds some slack).
    redis.kill();
    for _ in 0..30 {
        let took = Instant::now();
        let response = client.get(&format!("{base_a}/api/items")).await;
        assert!([200, 429].contains(&response.status.as_u16()));
        assert!(took.elapsed() < Duration::from_secs(1));
    }
    let ready = Client::new().get(&format!("{ops_a}/health/ready")).await;
    assert_eq!(ready.status, 200, "still in rotation: {}", ready.text());
    assert!(
        ready.text().contains("Redis unreachable"),
        "readiness warns: {}",
        ready.text()
    );
    let metrics = client.get(&format!("{ops_a}/metrics")).await.text();
    assert!(
        metrics.contains("palisade_rate_limit_backend_state{backend=\"redis\"} 1"),
        "{metrics}"
    );

    // Redis returns: the breaker's probe finds it and the limit is shared again.
    redis.restart().unwrap();
    eventually("the shared limit to return", async || {
        let metrics = client.get(&format!("{ops_a}/metrics")).await.text();
        metrics.contains("palisade_rate_limit_backend_state{backend=\"redis\"} 0")
    })
    .await;
    client.get(&format!("{base_a}/api/items")).await;
    assert_ne!(
        redis.command(&["DBSIZE"]).unwrap(),
        "0",
        "state in Redis again"
    );
}
