//! One `tracing` event per transition (a warning when a breaker opens), never per call.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use palisade_circuit_breaker::Breaker;
use tracing::{
    Event, Level, Metadata, Subscriber,
    field::{Field, Visit},
    span::{Attributes, Id, Record},
};

/// The level, breaker, from and to of an event.
type Seen = (Level, String, String, String);

/// Collects every event.
#[derive(Clone, Default)]
struct Collect(Arc<Mutex<Vec<Seen>>>);

#[derive(Default)]
struct Fields {
    breaker: String,
    from: String,
    to: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "breaker" => value.clone_into(&mut self.breaker),
            "from" => value.clone_into(&mut self.from),
            "to" => value.clone_into(&mut self.to),
            _ => {}
        }
    }

    fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
}

impl Subscriber for Collect {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        self.0.lock().unwrap().push((
            *event.metadata().level(),
            fields.breaker,
            fields.from,
            fields.to,
        ));
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[tokio::test(start_paused = true)]
async fn each_transition_is_logged_once() {
    let collect = Collect::default();
    let _guard = tracing::subscriber::set_default(collect.clone());
    let breaker = Breaker::builder()
        .name("db")
        .permitted_calls_in_half_open(1)
        .success_threshold(1)
        .build()
        .unwrap();
    for _ in 0..50 {
        breaker.try_acquire().unwrap().success();
    }
    for _ in 0..5 {
        breaker.try_acquire().unwrap().failure();
    }
    for _ in 0..20 {
        assert!(breaker.try_acquire().is_err());
    }
    tokio::time::advance(Duration::from_secs(30)).await;
    breaker.try_acquire().unwrap().success();
    let seen = collect.0.lock().unwrap().clone();
    let expect =
        |level, from: &str, to: &str| (level, "db".to_owned(), from.to_owned(), to.to_owned());
    assert_eq!(
        seen,
        vec![
            expect(Level::WARN, "closed", "open"),
            expect(Level::INFO, "open", "half_open"),
            expect(Level::INFO, "half_open", "closed"),
        ]
    );
}
