//! Paused-clock unit tests of the bulkhead's queue: order, priority, timeout, cancellation.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use palisade_core::{EnforcementMode, Priority};
use tokio::time::Instant;

use crate::{BulkheadConfig, BulkheadPool, RejectReason};

fn bulkhead(max_concurrent: u32, max_queued: u32, priority_ordering: bool) -> BulkheadPool {
    BulkheadPool::new(BulkheadConfig {
        max_concurrent,
        max_queued,
        max_wait: Duration::from_secs(10),
        priority_ordering,
        ..BulkheadConfig::named("test")
    })
    .unwrap()
}

/// Lets spawned tasks run until `n` requests wait.
async fn until_queued(bulkhead: &BulkheadPool, n: usize) {
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
async fn service_order(bulkhead: &BulkheadPool, priorities: &[Priority]) -> Vec<usize> {
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
    let b = BulkheadPool::new(BulkheadConfig {
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
        let b = BulkheadPool::new(BulkheadConfig {
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
    let b = BulkheadPool::new(BulkheadConfig {
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
    let b = BulkheadPool::new(BulkheadConfig {
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

/// A request that must be refused at once: `QueueFull` without the (paused) clock moving. Were it
/// waiting instead, the runtime would auto-advance to its deadline and it would time out.
async fn refused_at_once(acquire: crate::Acquire) {
    let start = Instant::now();
    assert_eq!(acquire.await.unwrap_err(), RejectReason::QueueFull);
    assert_eq!(start.elapsed(), Duration::ZERO, "refused without waiting");
}

#[tokio::test(start_paused = true)]
async fn a_higher_class_evicts_the_youngest_lowest_waiter_from_a_full_queue() {
    let b = bulkhead(1, 2, true);
    let held = b.acquire(Priority::Critical).await.unwrap();
    let older = b.acquire(Priority::Sheddable);
    let younger = b.acquire(Priority::Sheddable);
    assert_eq!(b.queued(), 2, "the queue is full");

    let critical = b.acquire(Priority::Critical);
    assert!(critical.is_waiting(), "took a queue place instead of a 503");
    assert_eq!(b.queued(), 2, "one waiter out, one in");
    refused_at_once(younger).await;
    assert!(older.is_waiting());

    // The Critical is served first, then the Sheddable that kept its place.
    drop(held);
    let permit = critical.await.unwrap();
    assert_eq!((b.in_flight(), b.queued()), (1, 1));
    drop(permit);
    let permit = older.await.unwrap();
    drop(permit);
    assert_eq!((b.in_flight(), b.queued()), (0, 0));
    assert_eq!(b.inner.queue.unseen_evictions(), 0);
}

#[tokio::test(start_paused = true)]
async fn eviction_takes_the_lowest_class_first_then_the_most_recent() {
    let b = bulkhead(1, 3, true);
    let _held = b.acquire(Priority::Critical).await.unwrap();
    let a = b.acquire(Priority::Sheddable);
    let plus = b.acquire(Priority::SheddablePlus);
    let c = b.acquire(Priority::Sheddable);

    let _first = b.acquire(Priority::CriticalPlus);
    refused_at_once(c).await;
    let _second = b.acquire(Priority::Critical);
    refused_at_once(a).await;
    let _third = b.acquire(Priority::Critical);
    refused_at_once(plus).await;
    // Now CriticalPlus, Critical, Critical wait: a Critical outranks none of the lowest.
    refused_at_once(b.acquire(Priority::Critical)).await;
    assert_eq!(b.queued(), 3);
}

#[tokio::test(start_paused = true)]
async fn an_equal_or_lower_class_does_not_evict() {
    let b = bulkhead(1, 2, true);
    let _held = b.acquire(Priority::Critical).await.unwrap();
    let waiters = [
        b.acquire(Priority::SheddablePlus),
        b.acquire(Priority::SheddablePlus),
    ];
    refused_at_once(b.acquire(Priority::SheddablePlus)).await;
    refused_at_once(b.acquire(Priority::Sheddable)).await;
    assert!(waiters.iter().all(crate::Acquire::is_waiting));
    assert_eq!(b.queued(), 2);
}

#[tokio::test(start_paused = true)]
async fn fifo_mode_never_evicts() {
    let b = bulkhead(1, 2, false);
    let _held = b.acquire(Priority::Critical).await.unwrap();
    let waiters = [
        b.acquire(Priority::Sheddable),
        b.acquire(Priority::Sheddable),
    ];
    refused_at_once(b.acquire(Priority::CriticalPlus)).await;
    assert!(waiters.iter().all(crate::Acquire::is_waiting));
    assert_eq!(b.queued(), 2);
}

#[tokio::test(start_paused = true)]
async fn an_evicted_waiter_dropped_unpolled_leaves_nothing_behind() {
    let b = bulkhead(1, 1, true);
    let held = b.acquire(Priority::Critical).await.unwrap();
    let sheddable = b.acquire(Priority::Sheddable);
    let critical = b.acquire(Priority::Critical);
    assert_eq!(b.inner.queue.unseen_evictions(), 1);
    drop(sheddable); // the client went away before it learnt of the eviction
    assert_eq!(b.inner.queue.unseen_evictions(), 0);
    drop(held);
    drop(critical.await.unwrap());
    assert_eq!((b.in_flight(), b.queued()), (0, 0), "no slot leaked");
}
