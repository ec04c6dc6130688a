//! Model checks of the slot pool and its wait queue under every interleaving loom explores: slots
//! held never exceed the maximum, and no slot is leaked when waiters are cancelled, time out or are
//! evicted from a full queue by a higher class (even when a slot is handed to a waiter at the
//! moment it goes away).
//! Run with `RUSTFLAGS="--cfg palisade_loom" LOOM_MAX_PREEMPTIONS=3 cargo test -p palisade-bulkhead --lib loom_tests --release`
//! (`cargo xtask ci` does).

use std::task::{Wake, Waker};

use crate::queue::{Admission, WaitQueue, WaitState};
use loom::{sync::Arc, thread};
use palisade_core::Priority;

/// Wakes a parked loom thread.
struct Unpark(thread::Thread);

impl Wake for Unpark {
    fn wake(self: std::sync::Arc<Self>) {
        self.0.unpark();
    }
}

/// What a thread does once it waits in the queue.
#[derive(Clone, Copy)]
enum Then {
    /// Waits for its slot, holds it, releases it.
    Wait,
    /// Goes away (client disconnected).
    Cancel,
    /// Its `max_wait` expires.
    Expire,
}

fn run(max: u32, plan: &'static [(Priority, Then)]) {
    run_with_queue(max, 2, plan);
}

fn run_with_queue(max: u32, max_queued: u32, plan: &'static [(Priority, Then)]) {
    loom::model(move || {
        let queue = Arc::new(WaitQueue::new("loom", max, max_queued, true));
        let workers: Vec<_> = plan
            .iter()
            .map(|&(priority, then)| {
                let queue = Arc::clone(&queue);
                thread::spawn(move || {
                    let holds = match queue.acquire_or_enqueue(priority) {
                        Admission::Acquired => true,
                        Admission::Full => false,
                        Admission::Queued(ticket) => match then {
                            Then::Wait => {
                                // Park until the waker registered in the queue unparks us.
                                let waker =
                                    Waker::from(std::sync::Arc::new(Unpark(thread::current())));
                                loop {
                                    match queue.poll_ticket(ticket, &waker) {
                                        WaitState::Waiting => thread::park(),
                                        WaitState::Granted => break true,
                                        WaitState::Evicted => break false,
                                    }
                                }
                            }
                            Then::Cancel => {
                                queue.abandon(ticket);
                                false
                            }
                            Then::Expire => queue.expire(ticket) == WaitState::Granted,
                        },
                    };
                    if holds {
                        assert!(queue.load().0 <= max, "maximum exceeded");
                        queue.release();
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().unwrap();
        }
        assert_eq!(queue.load(), (0, 0), "a slot or a waiter was leaked");
        assert_eq!(queue.unseen_evictions(), 0, "an eviction notice was leaked");
    });
}

#[test]
fn waiters_get_slots_and_never_exceed_the_maximum() {
    run(
        1,
        &[
            (Priority::Critical, Then::Wait),
            (Priority::CriticalPlus, Then::Wait),
            (Priority::Sheddable, Then::Wait),
        ],
    );
}

#[test]
fn cancelled_waiters_never_leak_a_slot() {
    run(
        1,
        &[
            (Priority::Critical, Then::Wait),
            (Priority::Critical, Then::Cancel),
            (Priority::Critical, Then::Wait),
        ],
    );
}

#[test]
fn expired_waiters_never_leak_a_slot() {
    run(
        1,
        &[
            (Priority::Critical, Then::Expire),
            (Priority::Sheddable, Then::Cancel),
            (Priority::CriticalPlus, Then::Wait),
        ],
    );
}

#[test]
fn evicted_waiters_never_leak_a_slot() {
    // One slot, one queue place: whichever Sheddable waits is evicted by the Critical if the
    // Critical arrives while it waits, in every order of arrival, grant and departure.
    run_with_queue(
        1,
        1,
        &[
            (Priority::Sheddable, Then::Wait),
            (Priority::Sheddable, Then::Cancel),
            (Priority::Critical, Then::Wait),
        ],
    );
}

#[test]
fn an_eviction_racing_a_timeout_never_leaks_a_slot() {
    run_with_queue(
        1,
        1,
        &[
            (Priority::Critical, Then::Wait),
            (Priority::Sheddable, Then::Expire),
            (Priority::CriticalPlus, Then::Wait),
        ],
    );
}
