//! State changes are logged as `tracing` events, once per change, not once per probe.
//!
//! Alone in its test binary: tracing caches each call site's interest process-wide, and tests on
//! other threads without a subscriber would race with this one's thread-local subscriber.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use palisade_core::OverloadState;
use palisade_health::{Check, HealthLayer, Probe};

/// Collects the message of every event.
#[derive(Clone, Default)]
struct Events(Arc<Mutex<Vec<String>>>);

impl Events {
    fn messages(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
    fn count(&self, needle: &str) -> usize {
        self.messages()
            .iter()
            .filter(|m| m.contains(needle))
            .count()
    }
}

struct Message<'a>(&'a mut String);

impl tracing::field::Visit for Message<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write;
        let _ = write!(self.0, " {}={value:?}", field.name());
    }
}

impl tracing::Subscriber for Events {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut line = String::new();
        event.record(&mut Message(&mut line));
        self.0.lock().unwrap().push(line);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[test]
fn state_changes_are_logged_once() {
    let events = Events::default();
    let _guard = tracing::subscriber::set_default(events.clone());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(async {
        let failing = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Arc::clone(&failing);
        let layer = HealthLayer::builder()
            .overload_state(OverloadState::new())
            .readiness_check(
                Check::from_fn("db", move || {
                    let failing = flag.load(std::sync::atomic::Ordering::SeqCst);
                    async move { !failing }
                })
                .on_demand(Duration::ZERO),
            )
            .build()
            .unwrap();
        let health = layer.handle();
        for _ in 0..3 {
            health.report(Probe::Readiness).await;
        }
        health.mark_started();
        health.mark_started();
        for _ in 0..3 {
            health.report(Probe::Readiness).await;
        }
        failing.store(true, std::sync::atomic::Ordering::SeqCst);
        for _ in 0..3 {
            health.report(Probe::Readiness).await;
        }
        health.begin_drain();
        health.begin_drain();
        health.report(Probe::Readiness).await;
    });
    let all = events.messages();
    assert_eq!(events.count("startup complete"), 1, "{all:#?}");
    assert_eq!(events.count("draining: readiness fails"), 1, "{all:#?}");
    // Ready: none -> fail (starting) -> pass -> fail (db). Draining keeps it at fail.
    assert_eq!(events.count("health probe status changed"), 3, "{all:#?}");
    // db: none -> pass -> fail.
    assert_eq!(events.count("health check status changed"), 2, "{all:#?}");
    assert!(
        all.iter()
            .any(|m| m.contains("check=db") && m.contains("to=\"fail\"")),
        "{all:#?}"
    );
}
