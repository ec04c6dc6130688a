//! Paused-clock unit tests of the bulkhead's queue: order, priority, timeout, cancellation.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use palisade_core::{EnforcementMode, Priority};
use tokio::time::Instant;

use crate::{Bulkhead, BulkheadConfig, RejectReason};

fn bulkhead(max_concurrent: u32, max_queued: u32, priority_ordering: bool) -> Bulkhead {
    Bulkhead::new(BulkheadConfig {
        max_concurrent,
        max_queued,
        max_wait: Duration::from_secs(10),
        priority_ordering,
        ..BulkheadConfig::named("test")
    })
    .unwrap()
}

/// Lets spawned tasks run until `n` requests wait.
async fn until_queued(bulkhead: &Bulkhead, n: usize) {
    for _ in 0..1000 {
        if bulkhead.queued() == n {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("{bulkhead:?}: wanted {n} queued");
}

/// Takes the only slot, queues waiters with the given priorities one after the other, frees the
/// slot, and returns the order in which the waiters were served.
async fn service_order(bulkhead: &Bulkhead, priorities: &[Priority]) -> Vec<usize> {
    let first = bulkhead.acquire(Priority::Critical).await.unwrap();
    let served = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for (i, &priority) in priorities.iter().enumerate() {
        let waiter = bulkhead.clone();
        let served = Arc::clone(&served);
        tasks.push(tokio::spawn(async move {
            let permit = waiter.acquire(priority).await.unwrap();
            served.lock().unwrap().push(i);
            assert_eq!(waiter.in_flight(), 1, "one slot, one holder");
            tokio::task::yield_now().await;
            drop(permit);
        }));
        until_queued(bulkhead, i + 1).await;
    }
    drop(first);
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!((bulkhead.in_flight(), bulkhead.queued()), (0, 0));
    served.lock().unwrap().clone()
}

#[tokio::test(start_paused = true)]
async fn waiters_are_served_in_arrival_order() {
    let b = bulkhead(1, 10, false);
    let order = service_order(
        &b,
        &[
            Priority::Sheddable,
            Priority::CriticalPlus,
            Priority::Critical,
            Priority::SheddablePlus,
        ],
    )
    .await;
    assert_eq!(
        order,
        vec![0, 1, 2, 3],
        "FIFO ignores priority when ordering is off"
    );
}

#[tokio::test(start_paused = true)]
async fn priority_ordering_serves_the_highest_class_first_and_fifo_within() {
    let b = bulkhead(1, 10, true);
    let order = service_order(
        &b,
        &[
            Priority::Sheddable,
            Priority::Critical,
            Priority::CriticalPlus,
            Priority::Critical,
            Priority::SheddablePlus,
        ],
    )
    .await;
    assert_eq!(order, vec![2, 1, 3, 4, 0]);
}

#[tokio::test(start_paused = true)]
async fn a_new_request_never_overtakes_a_waiter() {
    let b = bulkhead(1, 10, false);
    let first = b.acquire(Priority::Critical).await.unwrap();
    let mut waiter = Box::pin(b.acquire(Priority::Critical));
    assert!(waiter.is_waiting());
    drop(first);
    // The slot went to the waiter: a newcomer queues behind it.
    assert_eq!(b.in_flight(), 1);
    let newcomer = b.acquire(Priority::CriticalPlus);
    assert!(newcomer.is_waiting());
    let permit = waiter.as_mut().await.unwrap();
    drop(newcomer);
    drop(permit);
    assert_eq!((b.in_flight(), b.queued()), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn the_wait_expires_after_max_wait() {
    let b = Bulkhead::new(BulkheadConfig {
        max_concurrent: 1,
        max_wait: Duration::from_millis(250),
        ..BulkheadConfig::named("slow")
    })
    .unwrap();
    let held = b.acquire(Priority::Critical).await.unwrap();
    let start = Instant::now();
    let result = b.acquire(Priority::Critical).await;
    assert_eq!(result.unwrap_err(), RejectReason::WaitTimeout);
    assert_eq!(start.elapsed(), Duration::from_millis(250));
    assert_eq!(
        (b.in_flight(), b.queued()),
        (1, 0),
        "the waiter left the queue"
    );
    drop(held);
    assert_eq!(b.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_slot_freed_before_the_deadline_is_taken() {
    let b = bulkhead(1, 10, false);
    let held = b.acquire(Priority::Critical).await.unwrap();
    let releaser = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(3)).await;
        drop(held);
    });
    let start = Instant::now();
    let permit = b.acquire(Priority::Critical).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(3));
    releaser.await.unwrap();
    assert_eq!(b.in_flight(), 1);
    drop(permit);
    assert_eq!(b.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_rejects_at_once() {
    let b = bulkhead(1, 1, false);
    let _held = b.acquire(Priority::Critical).await.unwrap();
    let _waiter = b.acquire(Priority::Critical);
    let start = Instant::now();
    assert_eq!(
        b.acquire(Priority::CriticalPlus).await.unwrap_err(),
        RejectReason::QueueFull
    );
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn zero_wait_or_zero_queue_rejects_at_once() {
    for (max_queued, max_wait) in [(0, Duration::from_secs(1)), (5, Duration::ZERO)] {
        let b = Bulkhead::new(BulkheadConfig {
            max_concurrent: 2,
            max_queued,
            max_wait,
            ..BulkheadConfig::named("nowait")
        })
        .unwrap();
        let _a = b.acquire(Priority::Critical).await.unwrap();
        let _b = b.acquire(Priority::Critical).await.unwrap();
        let third = b.acquire(Priority::Critical);
        assert!(!third.is_waiting());
        assert_eq!(third.await.unwrap_err(), RejectReason::QueueFull);
        assert_eq!(b.queued(), 0);
    }
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_waiter_leaves_the_queue_at_once() {
    let b = bulkhead(1, 10, false);
    let held = b.acquire(Priority::Critical).await.unwrap();
    let waiter = {
        let b = b.clone();
        tokio::spawn(async move { b.acquire(Priority::Critical).await.map(drop) })
    };
    until_queued(&b, 1).await;
    waiter.abort();
    assert!(waiter.await.unwrap_err().is_cancelled());
    assert_eq!(b.queued(), 0, "left the queue");
    drop(held);
    assert_eq!((b.in_flight(), b.queued()), (0, 0), "no slot leaked");
}

#[tokio::test(start_paused = true)]
async fn a_slot_handed_to_a_cancelled_waiter_is_passed_on() {
    let b = bulkhead(1, 10, false);
    let held = b.acquire(Priority::Critical).await.unwrap();
    let first = b.acquire(Priority::Critical);
    let mut second = Box::pin(b.acquire(Priority::Critical));
    assert_eq!(b.queued(), 2);
    // The slot is handed to `first`, which is cancelled before it ever sees it.
    drop(held);
    assert_eq!(b.in_flight(), 1);
    drop(first);
    // Handed on to `second`, which counts as queued until it is polled.
    assert_eq!((b.in_flight(), b.queued()), (1, 1));
    let permit = second.as_mut().await.unwrap();
    assert_eq!((b.in_flight(), b.queued()), (1, 0));
    drop(permit);
    assert_eq!((b.in_flight(), b.queued()), (0, 0));

    // With nobody behind it, the slot returns to the pool.
    let held = b.acquire(Priority::Critical).await.unwrap();
    let only = b.acquire(Priority::Critical);
    drop(held);
    drop(only);
    assert_eq!((b.in_flight(), b.queued()), (0, 0), "no slot leaked");
}

#[tokio::test(start_paused = true)]
async fn a_slot_handed_over_at_the_deadline_wins() {
    let b = Bulkhead::new(BulkheadConfig {
        max_concurrent: 1,
        max_wait: Duration::from_millis(100),
        ..BulkheadConfig::named("edge")
    })
    .unwrap();
    let held = b.acquire(Priority::Critical).await.unwrap();
    let mut waiter = Box::pin(b.acquire(Priority::Critical));
    tokio::time::advance(Duration::from_millis(100)).await;
    drop(held); // granted, and the deadline has passed: the grant wins.
    let permit = waiter.as_mut().await.unwrap();
    assert_eq!(b.in_flight(), 1);
    drop(permit);
    assert_eq!(b.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn observe_only_never_waits_or_rejects() {
    let b = Bulkhead::new(BulkheadConfig {
        max_concurrent: 1,
        max_queued: 1,
        mode: EnforcementMode::ObserveOnly,
        ..BulkheadConfig::named("shadow")
    })
    .unwrap();
    let permits: Vec<_> = [(); 4]
        .iter()
        .map(|()| b.acquire(Priority::Critical))
        .collect();
    let mut held = Vec::new();
    for acquire in permits {
        held.push(acquire.await.unwrap());
    }
    assert_eq!((b.in_flight(), b.queued()), (4, 0));
    held.clear();
    assert_eq!(b.in_flight(), 0);
}
