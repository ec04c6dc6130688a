//! Per-message cost of a bounded queue (`try_send` + the writer draining it into a socket) against
//! the nearest peer, what naive axum apps do: an unbounded tokio mpsc channel per client with a
//! task that `send`s each message to the socket. The socket is a sink that counts and discards,
//! so only the queueing is measured, in the same run:
//!
//! - one connection: messages pushed in batches of 64, then drained;
//! - fan-out: one published message to 100 connections (a `Hub` against a `Vec` of channels),
//!   time per message per connection.
//!
//! `cargo bench -p palisade-ws-backpressure --bench queue`

use std::{
    hint::black_box,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use axum::extract::ws::Message;
use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::{Sink, SinkExt};
use palisade_ws_backpressure::{Backpressure, Hub};
use tokio::sync::mpsc;

const BATCH: u64 = 64;
const CLIENTS: u64 = 100;

/// A socket that takes everything at once and counts messages.
#[derive(Clone, Default)]
struct CountingSink(Arc<AtomicU64>);

impl Sink<Message> for CountingSink {
    type Error = std::convert::Infallible;

    fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), Self::Error> {
        black_box(item);
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }
}

fn message() -> Message {
    Message::Binary(Bytes::from(vec![7u8; 64]))
}

/// Limits far above what a batch queues: the bench measures the queue, not its policy.
fn backpressure() -> Backpressure {
    Backpressure::builder()
        .send_buffer_high_water(1 << 30)
        .send_buffer_low_water(1 << 20)
        .max_queued_messages(1 << 20)
        .build()
        .expect("valid config")
}

/// Lets the writer tasks run until `counter` reaches `target`.
async fn until(counters: &[Arc<AtomicU64>], target: u64) {
    for counter in counters {
        while counter.load(Ordering::Relaxed) < target {
            tokio::task::yield_now().await;
        }
    }
}

async fn one_bounded(iters: u64) -> Duration {
    let sink = CountingSink::default();
    let (sender, writer) = backpressure().channel(sink.clone());
    let task = tokio::spawn(writer.run());
    let payload = message();
    let start = Instant::now();
    let mut sent = 0;
    while sent < iters {
        for _ in 0..BATCH.min(iters - sent) {
            let _ = black_box(sender.try_send(payload.clone()));
            sent += 1;
        }
        until(std::slice::from_ref(&sink.0), sent).await;
    }
    let elapsed = start.elapsed();
    drop(sender);
    task.await.expect("writer");
    elapsed
}

/// What naive axum apps do: an unbounded channel and a task that sends each message.
fn naive_writer(mut sink: CountingSink) -> mpsc::UnboundedSender<Message> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
    tokio::spawn(async move {
        while let Some(message) = rx.recv().await {
            if sink.send(message).await.is_err() {
                break;
            }
        }
    });
    tx
}

async fn one_naive(iters: u64) -> Duration {
    let sink = CountingSink::default();
    let tx = naive_writer(sink.clone());
    let payload = message();
    let start = Instant::now();
    let mut sent = 0;
    while sent < iters {
        for _ in 0..BATCH.min(iters - sent) {
            black_box(tx.send(payload.clone())).expect("writer alive");
            sent += 1;
        }
        until(std::slice::from_ref(&sink.0), sent).await;
    }
    start.elapsed()
}

/// `iters` deliveries = `iters / CLIENTS` publishes to `CLIENTS` members.
async fn fan_out_hub(iters: u64) -> Duration {
    let hub = Hub::with_backpressure(backpressure());
    let mut counters = Vec::new();
    let mut memberships = Vec::new();
    for _ in 0..CLIENTS {
        let sink = CountingSink::default();
        counters.push(sink.0.clone());
        let (sender, writer) = hub.backpressure().channel(sink);
        tokio::spawn(writer.run());
        memberships.push(hub.subscribe(sender));
    }
    let payload = message();
    let publishes = iters.div_ceil(CLIENTS);
    let start = Instant::now();
    for published in 1..=publishes {
        black_box(hub.publish(payload.clone()));
        if published % BATCH == 0 || published == publishes {
            until(&counters, published).await;
        }
    }
    start.elapsed()
}

async fn fan_out_naive(iters: u64) -> Duration {
    let mut counters = Vec::new();
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let sink = CountingSink::default();
        counters.push(sink.0.clone());
        clients.push(naive_writer(sink));
    }
    let payload = message();
    let publishes = iters.div_ceil(CLIENTS);
    let start = Instant::now();
    for published in 1..=publishes {
        for client in &clients {
            black_box(client.send(payload.clone())).expect("writer alive");
        }
        if published % BATCH == 0 || published == publishes {
            until(&counters, published).await;
        }
    }
    start.elapsed()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("one connection");
    group.bench_function("palisade bounded queue", |b| {
        b.to_async(&rt).iter_custom(one_bounded);
    });
    group.bench_function("tokio mpsc unbounded", |b| {
        b.to_async(&rt).iter_custom(one_naive);
    });
    group.finish();

    let mut group = c.benchmark_group("fan-out to 100, per delivery");
    group.bench_function("palisade Hub", |b| {
        b.to_async(&rt).iter_custom(fan_out_hub);
    });
    group.bench_function("Vec of tokio mpsc unbounded", |b| {
        b.to_async(&rt).iter_custom(fan_out_naive);
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
