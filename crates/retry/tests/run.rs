//! The guard API on a paused clock: the same schedule, deadline, budget and hedging as the
//! layer, around plain async closures.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering::SeqCst},
    },
    time::Duration,
};

use palisade_retry::{BudgetConfig, Retrier, RetryConfig, RetryError, RetryLayer};
use tokio::time::Instant;

const MS: Duration = Duration::from_millis(1);

#[derive(Debug, PartialEq)]
enum DbError {
    Reset,
    Constraint,
}

/// Runs `op` through `retrier`, logging when each attempt started (ms since the call).
async fn timed<T>(
    retrier: &Retrier,
    mut op: impl FnMut(u32) -> Result<T, DbError>,
) -> (Result<T, RetryError<DbError>>, Vec<u128>) {
    let start = Instant::now();
    let times = Arc::new(Mutex::new(Vec::new()));
    let n = AtomicU32::new(0);
    let log = Arc::clone(&times);
    let result = retrier
        .run_if(
            |e: &DbError| *e == DbError::Reset,
            || {
                log.lock().unwrap().push(start.elapsed().as_millis());
                let result = op(n.fetch_add(1, SeqCst));
                async move { result }
            },
        )
        .await;
    let times = times.lock().unwrap().clone();
    (result, times)
}

#[tokio::test(start_paused = true)]
async fn the_schedule_and_classification_match_the_layer() {
    let retrier = Retrier::builder()
        .max_attempts(4)
        .random(|| 1.0)
        .build()
        .unwrap();
    let (result, times) = timed(&retrier, |_| Err::<(), _>(DbError::Reset)).await;
    assert!(matches!(result, Err(RetryError::Inner(DbError::Reset))));
    assert_eq!(times, [0, 100, 300, 700]);

    let (result, times) = timed(&retrier, |_| Err::<(), _>(DbError::Constraint)).await;
    assert!(matches!(
        result,
        Err(RetryError::Inner(DbError::Constraint))
    ));
    assert_eq!(times, [0], "not retryable: returned at once");

    let (result, times) = timed(
        &retrier,
        |n| if n < 2 { Err(DbError::Reset) } else { Ok(n) },
    )
    .await;
    assert_eq!(result.unwrap(), 2);
    assert_eq!(times, [0, 100, 300]);
}

#[tokio::test(start_paused = true)]
async fn run_retries_every_error_until_the_deadline() {
    let retrier = Retrier::builder()
        .max_attempts(10)
        .base_delay(300 * MS)
        .max_delay(300 * MS)
        .deadline(Duration::from_secs(1))
        .random(|| 1.0)
        .build()
        .unwrap();
    let calls = AtomicU32::new(0);
    let start = Instant::now();
    let result = retrier
        .run(|| {
            calls.fetch_add(1, SeqCst);
            async { Err::<(), _>("refused") }
        })
        .await;
    assert!(matches!(result, Err(RetryError::Inner("refused"))));
    assert_eq!(
        calls.load(SeqCst),
        4,
        "0, 300, 600, 900; 1200 is past the deadline"
    );
    assert_eq!(start.elapsed(), 900 * MS);
}

#[tokio::test(start_paused = true)]
async fn attempts_time_out() {
    let retrier = Retrier::builder()
        .attempt_timeout(50 * MS)
        .random(|| 0.0)
        .build()
        .unwrap();
    let calls = AtomicU32::new(0);
    let result = retrier
        .run(|| {
            let n = calls.fetch_add(1, SeqCst);
            async move {
                if n == 0 {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                }
                Ok::<_, ()>(n)
            }
        })
        .await;
    assert_eq!(result.unwrap(), 1);
}

#[tokio::test(start_paused = true)]
async fn the_budget_is_shared_with_the_layer() {
    let mut config = RetryConfig::default();
    config.budget = BudgetConfig::default();
    config.budget.ratio = 0.0;
    config.budget.min_per_second = 0.2; // two retries per 10 s window
    let layer = RetryLayer::from_config(config).unwrap();
    let retrier = layer.retrier();
    let calls = AtomicU32::new(0);
    let fail = || {
        calls.fetch_add(1, SeqCst);
        async { Err::<(), _>(()) }
    };
    retrier.run(fail).await.unwrap_err();
    assert_eq!(calls.load(SeqCst), 3, "two retries from the floor");
    retrier.run(fail).await.unwrap_err();
    assert_eq!(calls.load(SeqCst), 4, "spent");
    assert!(
        layer.budget().balance(None) < 1.0,
        "the layer sees the same budget"
    );
    tokio::time::advance(Duration::from_secs(10)).await;
    retrier.run(fail).await.unwrap_err();
    assert_eq!(calls.load(SeqCst), 7, "the floor is back after a window");
}

#[tokio::test(start_paused = true)]
async fn hedged_operations_race() {
    let retrier = Retrier::builder().hedge_after(20 * MS).build().unwrap();
    let calls = AtomicU32::new(0);
    let start = Instant::now();
    let winner = retrier
        .run(|| {
            let n = calls.fetch_add(1, SeqCst);
            async move {
                let delay = if n == 0 { 1000 } else { 5 };
                tokio::time::sleep(delay * MS).await;
                Ok::<_, ()>(n)
            }
        })
        .await;
    assert_eq!(winner.unwrap(), 1);
    assert_eq!(start.elapsed(), 25 * MS);
}

#[test]
fn invalid_configurations_are_errors_not_panics() {
    assert_eq!(
        Retrier::builder()
            .max_attempts(0)
            .build()
            .unwrap_err()
            .key(),
        "max_attempts"
    );
    assert_eq!(
        Retrier::builder()
            .base_delay(Duration::from_secs(2))
            .build()
            .unwrap_err()
            .key(),
        "base_delay"
    );
    let mut budget = BudgetConfig::default();
    budget.ratio = 11.0;
    assert_eq!(
        RetryLayer::builder()
            .budget_config(budget)
            .build()
            .unwrap_err()
            .key(),
        "budget.ratio"
    );
    assert_eq!(
        RetryLayer::builder()
            .retry_statuses([404])
            .build()
            .unwrap_err()
            .key(),
        "retry_statuses"
    );
}
