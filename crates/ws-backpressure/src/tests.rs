//! Sender, writer, receiver and hub together over a mock socket, on a paused clock: the writer
//! drains in order, a stalled socket is abandoned at the slow-client deadline, a client that
//! resumes in time is kept, control frames go first, `send` waits for low water, observe-only
//! mode and the metrics.

use std::{
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll, Waker},
    time::Duration,
};

use axum::extract::ws::{CloseFrame, Message};
use bytes::Bytes;
use futures_util::Sink;
use metrics_util::{
    CompositeKey, MetricKind,
    debugging::{DebugValue, DebuggingRecorder},
};
use palisade_core::EnforcementMode;
use tokio::time::Instant;

use crate::{
    Backpressure, CloseReason, DropReason, Hub, OverflowPolicy, SendError, SendOutcome,
    SlowClientAction, metrics as names,
};

/// A socket whose write side the test can stall (every operation pending, as when the client
/// stops reading and the TCP buffers are full), resume, or break.
#[derive(Clone, Default)]
struct MockSink {
    state: Arc<Mutex<MockState>>,
}

#[derive(Default)]
struct MockState {
    written: Vec<Message>,
    flushes: usize,
    stalled: bool,
    /// Messages a stalled socket still accepts (a client reading very slowly).
    credits: usize,
    broken: bool,
    waker: Option<Waker>,
}

impl MockSink {
    fn stalled() -> Self {
        let sink = Self::default();
        sink.state.lock().unwrap().stalled = true;
        sink
    }

    fn set_stalled(&self, stalled: bool) {
        let mut state = self.state.lock().unwrap();
        state.stalled = stalled;
        if let Some(waker) = state.waker.take() {
            waker.wake();
        }
    }

    /// Lets a stalled socket take `n` more messages.
    fn grant(&self, n: usize) {
        let mut state = self.state.lock().unwrap();
        state.credits += n;
        if let Some(waker) = state.waker.take() {
            waker.wake();
        }
    }

    fn break_it(&self) {
        self.state.lock().unwrap().broken = true;
        self.set_stalled(false);
    }

    fn written(&self) -> Vec<Message> {
        self.state.lock().unwrap().written.clone()
    }

    fn poll(&self, cx: &Context<'_>, credit_ok: bool) -> Poll<Result<(), &'static str>> {
        let mut state = self.state.lock().unwrap();
        if state.broken {
            Poll::Ready(Err("broken pipe"))
        } else if state.stalled && !(credit_ok && state.credits > 0) {
            state.waker = Some(cx.waker().clone());
            Poll::Pending
        } else {
            Poll::Ready(Ok(()))
        }
    }
}

impl Sink<Message> for MockSink {
    type Error = &'static str;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.poll(cx, true)
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), Self::Error> {
        let mut state = self.state.lock().unwrap();
        if state.stalled {
            state.credits -= 1;
        }
        state.written.push(item);
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // A slow reader's socket flushes when it has room for one more message.
        let ready = self.poll(cx, true);
        if ready.is_ready() {
            self.state.lock().unwrap().flushes += 1;
        }
        ready
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.poll(cx, false)
    }
}

const SECOND: Duration = Duration::from_secs(1);

fn config() -> crate::config::BackpressureBuilder {
    Backpressure::builder()
        .name("test")
        .send_buffer_high_water(100)
        .send_buffer_low_water(40)
        .max_queued_messages(1000)
        .slow_client_threshold(Duration::from_secs(5))
        .send_timeout(Duration::from_secs(2))
        .close_timeout(Duration::from_millis(100))
}

fn backpressure(builder: crate::config::BackpressureBuilder) -> Backpressure {
    builder.build().unwrap()
}

fn data(len: usize, tag: u8) -> Message {
    Message::Binary(Bytes::from(vec![tag; len]))
}

fn tags(messages: &[Message]) -> Vec<u8> {
    messages
        .iter()
        .filter_map(|m| match m {
            Message::Binary(b) => Some(b[0]),
            _ => None,
        })
        .collect()
}

/// `future`, or a panic after a minute of (paused, auto-advancing) time: a regression fails
/// instead of hanging.
async fn within<F: std::future::Future>(future: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(60), future)
        .await
        .expect("did not finish within 60 s of test time")
}

/// Lets spawned tasks run until they block (the paused clock does not advance).
async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn the_writer_drains_in_order_and_flushes_once_per_burst() {
    let sink = MockSink::default();
    let (sender, writer) = backpressure(config()).channel(sink.clone());
    let task = tokio::spawn(writer.run());
    for tag in 0..5 {
        assert_eq!(sender.try_send(data(10, tag)), SendOutcome::Queued);
    }
    settle().await;
    assert_eq!(tags(&sink.written()), vec![0, 1, 2, 3, 4]);
    assert_eq!(
        sink.state.lock().unwrap().flushes,
        1,
        "one flush for the burst"
    );
    let stats = sender.stats();
    assert_eq!((stats.buffered_bytes, stats.queued_messages), (0, 0));
    assert_eq!(stats.written_messages, 5);
    drop(sender);
    assert_eq!(within(task).await.unwrap(), CloseReason::SendersDropped);
}

#[tokio::test(start_paused = true)]
async fn a_stalled_client_is_disconnected_at_the_threshold_with_its_close_code() {
    let sink = MockSink::stalled();
    let (sender, writer) = backpressure(config()).channel(sink.clone());
    let task = tokio::spawn(writer.run());
    let start = Instant::now();
    let mut outcomes = Vec::new();
    for tag in 0..10 {
        outcomes.push(sender.try_send(data(30, tag)));
    }
    // 0..=3 are queued (120 bytes) before the writer runs; it takes 0 and blocks in the socket.
    settle().await;
    assert_eq!(outcomes[2], SendOutcome::Queued);
    assert_eq!(outcomes[3], SendOutcome::Backpressured);
    assert!(
        outcomes[4..]
            .iter()
            .all(|o| *o == SendOutcome::Dropped(DropReason::DropNewest))
    );
    assert_eq!(
        sender.stats().peak_buffered_bytes,
        120,
        "high water plus one message"
    );
    assert_eq!(sender.stats().buffered_bytes, 90);

    assert_eq!(within(sender.closed()).await, CloseReason::SlowClient);
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(5),
        "exactly the threshold"
    );
    assert_eq!(sender.try_send(data(1, 0)), SendOutcome::Closed);
    assert_eq!(sender.stats().buffered_bytes, 0, "queued data discarded");
    // The client reads again: the close frame bypasses everything that was queued.
    sink.set_stalled(false);
    assert_eq!(within(task).await.unwrap(), CloseReason::SlowClient);
    let written = sink.written();
    assert_eq!(
        written.last(),
        Some(&Message::Close(Some(CloseFrame {
            code: 1008,
            reason: "too slow".into()
        })))
    );
    assert_eq!(tags(&written), Vec::<u8>::new(), "message 0 was abandoned");
}

#[tokio::test(start_paused = true)]
async fn a_socket_that_never_takes_the_close_frame_is_dropped_after_the_close_timeout() {
    let sink = MockSink::stalled();
    let (sender, writer) = backpressure(config()).channel(sink.clone());
    let task = tokio::spawn(writer.run());
    for tag in 0..6 {
        let _ = sender.try_send(data(30, tag));
    }
    let start = Instant::now();
    assert_eq!(within(task).await.unwrap(), CloseReason::SlowClient);
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(5) + Duration::from_millis(100)
    );
    assert!(sink.written().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_client_that_resumes_before_the_threshold_is_kept() {
    let sink = MockSink::stalled();
    let (sender, writer) = backpressure(config()).channel(sink.clone());
    let task = tokio::spawn(writer.run());
    for tag in 0..6 {
        let _ = sender.try_send(data(30, tag));
    }
    settle().await;
    assert!(sender.stats().backpressured_since.is_some());
    tokio::time::sleep(Duration::from_millis(4900)).await;
    sink.set_stalled(false);
    settle().await;
    let stats = sender.stats();
    assert_eq!(stats.backpressured_since, None, "drained to low water");
    assert_eq!(tags(&sink.written()), vec![0, 1, 2, 3]);
    // Well past the original deadline: still open, and takes data again.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(!sender.is_closed());
    assert_eq!(sender.try_send(data(30, 9)), SendOutcome::Queued);
    settle().await;
    assert_eq!(tags(&sink.written()), vec![0, 1, 2, 3, 9]);
    drop(sender);
    assert_eq!(within(task).await.unwrap(), CloseReason::SendersDropped);
}

#[tokio::test(start_paused = true)]
async fn a_client_that_never_drains_to_low_water_is_slow_even_while_reading() {
    // Drop-oldest keeps the newest data queued: a client that reads one message per 500 ms while
    // the producer adds one keeps the queue between low and high water, so the clock runs on.
    let sink = MockSink::stalled();
    let (sender, writer) =
        backpressure(config().overflow_policy(OverflowPolicy::DropOldest)).channel(sink.clone());
    let task = tokio::spawn(writer.run());
    let start = Instant::now();
    for tag in 0..4 {
        let _ = sender.try_send(data(30, tag));
    }
    let mut tag = 4u8;
    for _ in 0..20 {
        if sender.is_closed() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let _ = sender.try_send(data(30, tag));
        tag = tag.wrapping_add(1);
        sink.grant(1);
        settle().await;
    }
    assert_eq!(within(task).await.unwrap(), CloseReason::SlowClient);
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_secs(5) && elapsed <= Duration::from_millis(5500),
        "{elapsed:?}"
    );
    assert!(tags(&sink.written()).len() >= 9, "it was reading all along");
}

#[tokio::test(start_paused = true)]
async fn with_drop_newest_a_client_that_drains_to_low_water_in_time_is_kept() {
    // Drop-newest refuses data while backpressured, so a client that keeps reading drains to low
    // water and ends the episode: the threshold is a drain rate, (high - low) per threshold.
    let sink = MockSink::stalled();
    let (sender, writer) = backpressure(config()).channel(sink.clone());
    let task = tokio::spawn(writer.run());
    for tick in 0..40u8 {
        let _ = sender.try_send(data(30, tick));
        sink.grant(1);
        settle().await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        // Two messages per tick from the producer, one read by the client.
        let _ = sender.try_send(data(30, tick));
    }
    assert!(!sender.is_closed());
    assert!(sender.stats().dropped_messages > 0);
    drop(sender);
    sink.set_stalled(false);
    assert_eq!(within(task).await.unwrap(), CloseReason::SendersDropped);
}

#[tokio::test(start_paused = true)]
async fn report_only_keeps_the_slow_client_and_flags_it() {
    let sink = MockSink::stalled();
    let (sender, writer) =
        backpressure(config().slow_client_action(SlowClientAction::Report)).channel(sink.clone());
    let task = tokio::spawn(writer.run());
    for tag in 0..6 {
        let _ = sender.try_send(data(30, tag));
    }
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(!sender.is_closed());
    assert!(sender.stats().slow);
    // Still bounded by the overflow policy.
    assert!(!sender.try_send(data(30, 7)).is_queued());
    sink.set_stalled(false);
    settle().await;
    assert!(!sender.stats().slow, "a new episode starts clean");
    drop(sender);
    assert_eq!(within(task).await.unwrap(), CloseReason::SendersDropped);
}

#[tokio::test(start_paused = true)]
async fn control_frames_bypass_queued_data() {
    let sink = MockSink::stalled();
    let (sender, writer) = backpressure(config()).channel(sink.clone());
    let task = tokio::spawn(writer.run());
    for tag in 0..6 {
        let _ = sender.try_send(data(30, tag));
    }
    settle().await;
    assert_eq!(
        sender.try_send(Message::Pong(Bytes::from_static(b"pong"))),
        SendOutcome::Queued
    );
    assert_eq!(
        sender.try_send(Message::Ping(Bytes::from_static(b"ping"))),
        SendOutcome::Queued
    );
    sink.set_stalled(false);
    settle().await;
    let written = sink.written();
    // Message 0 was already in the writer's hands; the control frames overtake 1..=3.
    assert_eq!(tags(&written[..1]), vec![0]);
    assert_eq!(written[1], Message::Pong(Bytes::from_static(b"pong")));
    assert_eq!(written[2], Message::Ping(Bytes::from_static(b"ping")));
    assert_eq!(tags(&written[3..]), vec![1, 2, 3]);
    // A close from the application also overtakes (and discards) queued data.
    sink.set_stalled(true);
    for tag in 10..13 {
        let _ = sender.try_send(data(30, tag));
    }
    settle().await;
    let frame = CloseFrame {
        code: 1001,
        reason: "going away".into(),
    };
    assert!(sender.close(Some(frame.clone())));
    assert!(!sender.close(None), "only once");
    sink.set_stalled(false);
    assert_eq!(within(task).await.unwrap(), CloseReason::ServerClosed);
    let written = sink.written();
    assert_eq!(written.last(), Some(&Message::Close(Some(frame))));
    assert!(!tags(&written).contains(&12));
}

#[tokio::test(start_paused = true)]
async fn send_waits_for_low_water_and_times_out() {
    let sink = MockSink::stalled();
    let (sender, writer) = backpressure(config()).channel(sink.clone());
    let task = tokio::spawn(writer.run());
    for tag in 0..6 {
        let _ = sender.try_send(data(30, tag));
    }
    settle().await;
    // Waits while backpressured; the socket drains after 1 s; the send then goes through.
    let waiting = {
        let sender = sender.clone();
        tokio::spawn(async move {
            let start = Instant::now();
            let outcome = sender.send(data(30, 42)).await;
            (outcome, start.elapsed())
        })
    };
    settle().await;
    assert!(!waiting.is_finished());
    tokio::time::sleep(SECOND).await;
    sink.set_stalled(false);
    let (outcome, waited) = waiting.await.unwrap();
    assert!(outcome.unwrap().is_queued());
    assert_eq!(waited, SECOND);
    settle().await;
    assert_eq!(*tags(&sink.written()).last().unwrap(), 42);

    // Stalled for good: gives the message back after `send_timeout` (2 s, before the 5 s
    // slow-client verdict).
    sink.set_stalled(true);
    for tag in 0..6 {
        let _ = sender.try_send(data(30, tag));
    }
    let start = Instant::now();
    // Control frames never wait.
    assert_eq!(
        sender.send(Message::Ping(Bytes::new())).await.unwrap(),
        SendOutcome::Queued
    );
    assert_eq!(start.elapsed(), Duration::ZERO);
    match sender.send(data(30, 43)).await {
        Err(SendError::Timeout(message)) => assert_eq!(tags(&[message]), vec![43]),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert_eq!(start.elapsed(), Duration::from_secs(2));
    // Waiting through the slow-client verdict (at 5 s) ends with `Closed`, at once.
    tokio::time::sleep(Duration::from_secs(2)).await;
    match sender.send(data(30, 44)).await {
        Err(SendError::Closed(_)) => {}
        other => panic!("expected closed, got {other:?}"),
    }
    assert_eq!(start.elapsed(), Duration::from_secs(5));
    sink.set_stalled(false);
    assert_eq!(within(task).await.unwrap(), CloseReason::SlowClient);
}

#[tokio::test(start_paused = true)]
async fn coalescing_keeps_the_latest_state_per_key() {
    let sink = MockSink::stalled();
    let (sender, writer) = backpressure(
        config()
            .overflow_policy(OverflowPolicy::Coalesce)
            .send_buffer_low_water(0),
    )
    .channel(sink.clone());
    let task = tokio::spawn(writer.run());
    // Keys 1..=4 fill the queue (key 5 finds it backpressured and nothing to replace); the
    // writer takes key 1 and blocks in the socket.
    for key in 1..=5u8 {
        let _ = sender.try_send_keyed(u64::from(key), data(30, key));
    }
    settle().await;
    // Nine more rounds of updates, round * 10 + key.
    for round in 1..10u8 {
        for key in 1..=5u8 {
            let _ = sender.try_send_keyed(u64::from(key), data(30, round * 10 + key));
        }
    }
    assert_eq!(sender.stats().queued_messages, 3, "one per queued key");
    sink.set_stalled(false);
    settle().await;
    // Keys 2..=4 carry their latest round (9), in their original order.
    assert_eq!(tags(&sink.written()), vec![1, 92, 93, 94]);
    drop(sender);
    assert_eq!(within(task).await.unwrap(), CloseReason::SendersDropped);
}

#[tokio::test(start_paused = true)]
async fn a_write_error_closes_the_connection() {
    let sink = MockSink::stalled();
    let (sender, writer) = backpressure(config()).channel(sink.clone());
    let task = tokio::spawn(writer.run());
    let _ = sender.try_send(data(30, 1));
    settle().await;
    sink.break_it();
    assert_eq!(within(task).await.unwrap(), CloseReason::Error);
    assert_eq!(within(sender.closed()).await, CloseReason::Error);
    assert_eq!(sender.try_send(data(1, 1)), SendOutcome::Closed);
}

#[tokio::test(start_paused = true)]
async fn the_receiver_ends_with_the_connection_and_reports_a_client_leaving() {
    // The client leaves: the stream ends, the writer stops at once.
    let (client, stream) = tokio::sync::mpsc::unbounded_channel::<Result<Message, &str>>();
    let stream = tokio_stream_from(stream);
    let sink = MockSink::stalled();
    let (sender, mut receiver, writer) = backpressure(config()).wrap(sink.clone(), stream);
    let task = tokio::spawn(writer.run());
    let _ = sender.try_send(data(30, 1));
    client.send(Ok(Message::text("hi"))).unwrap();
    assert_eq!(receiver.recv().await.unwrap().unwrap(), Message::text("hi"));
    drop(client);
    assert!(within(receiver.recv()).await.is_none());
    assert_eq!(within(task).await.unwrap(), CloseReason::ClientClosed);
    assert_eq!(sender.stats().closed, Some(CloseReason::ClientClosed));

    // The server disconnects a slow client: a receiver waiting for the client wakes up with None.
    let (_client, stream) = tokio::sync::mpsc::unbounded_channel::<Result<Message, &str>>();
    let (sender, mut receiver, writer) =
        backpressure(config()).wrap(MockSink::stalled(), tokio_stream_from(stream));
    let task = tokio::spawn(writer.run());
    for tag in 0..6 {
        let _ = sender.try_send(data(30, tag));
    }
    let start = Instant::now();
    assert!(within(receiver.recv()).await.is_none());
    assert_eq!(start.elapsed(), Duration::from_secs(5));
    assert_eq!(within(task).await.unwrap(), CloseReason::SlowClient);
}

fn tokio_stream_from<T>(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<T>,
) -> impl futures_util::Stream<Item = T> + Unpin {
    Box::pin(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)))
}

#[tokio::test(start_paused = true)]
async fn the_hub_isolates_a_stalled_member() {
    let hub = Hub::with_backpressure(backpressure(config()));
    let sinks = [
        MockSink::default(),
        MockSink::default(),
        MockSink::stalled(),
    ];
    let mut tasks = Vec::new();
    let mut memberships = Vec::new();
    let mut senders = Vec::new();
    for sink in &sinks {
        let (sender, writer) = hub.backpressure().channel(sink.clone());
        tasks.push(tokio::spawn(writer.run()));
        senders.push(sender.clone());
        memberships.push(hub.subscribe(sender));
    }
    assert_eq!(hub.connections(), 3);
    let payload = Bytes::from(vec![7u8; 30]);
    let mut last = crate::PublishReport::default();
    for _ in 0..50 {
        last = hub.publish(Message::Binary(payload.clone()));
        settle().await;
    }
    assert_eq!(last.queued, 2);
    assert_eq!(last.dropped, 1);
    for sink in &sinks[..2] {
        let written = sink.written();
        assert_eq!(written.len(), 50, "fast members got everything");
        // Shared, not copied: every member's message points at the published buffer.
        let Message::Binary(bytes) = &written[0] else {
            panic!()
        };
        assert_eq!(bytes.as_ptr(), payload.as_ptr());
    }
    assert!(senders[2].stats().peak_buffered_bytes <= 100 + 30);
    // The stalled member is disconnected at the threshold; the others stay.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(senders[2].is_closed() && !senders[0].is_closed());
    assert_eq!(hub.publish(Message::Binary(payload.clone())).closed, 1);
    drop(memberships.pop());
    assert_eq!(hub.connections(), 2);
    // Shutdown: close everyone.
    assert_eq!(hub.close_all(None), 2);
    for task in tasks {
        let _ = within(task).await.unwrap();
    }
    drop(memberships);
    assert_eq!(hub.connections(), 0);
}

#[tokio::test(start_paused = true)]
async fn observe_only_drops_nothing_keeps_slow_clients_and_counts_what_it_would_do() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let backpressure = metrics::with_local_recorder(&recorder, || {
        backpressure(config().mode(EnforcementMode::ObserveOnly))
    });
    let sink = MockSink::stalled();
    let (sender, writer) = backpressure.channel(sink.clone());
    let task = tokio::spawn(writer.run());
    for tag in 0..10 {
        assert!(sender.try_send(data(30, tag)).is_queued());
    }
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(!sender.is_closed());
    sink.set_stalled(false);
    settle().await;
    assert_eq!(tags(&sink.written()), (0..10).collect::<Vec<_>>());
    drop(sender);
    assert_eq!(within(task).await.unwrap(), CloseReason::SendersDropped);

    let snapshot = snapshot(&snapshotter);
    let ws = ("ws", "test");
    assert_eq!(
        value(
            &snapshot,
            names::MESSAGES_DROPPED,
            &[ws, ("reason", "drop_newest"), ("mode", "observe_only")]
        ),
        Some(&DebugValue::Counter(6)),
        "messages 4..=9 would have been dropped"
    );
    assert_eq!(
        value(
            &snapshot,
            names::SLOW_CLIENT_DISCONNECTS,
            &[ws, ("mode", "observe_only")]
        ),
        Some(&DebugValue::Counter(1))
    );
}

#[tokio::test(start_paused = true)]
async fn metrics_account_bytes_drops_disconnects_and_delay() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let backpressure = metrics::with_local_recorder(&recorder, || backpressure(config()));
    let sink = MockSink::stalled();
    let (sender, writer) = backpressure.channel(sink.clone());
    let task = tokio::spawn(writer.run());
    for tag in 0..8 {
        let _ = sender.try_send(data(30, tag));
    }
    settle().await;
    let snap = snapshot(&snapshotter);
    let ws = [("ws", "test")];
    assert_eq!(
        value(&snap, names::BUFFERED_BYTES, &ws),
        Some(&DebugValue::Gauge(90.0.into()))
    );
    assert_eq!(
        value(&snap, names::BACKPRESSURED_CONNECTIONS, &ws),
        Some(&DebugValue::Gauge(1.0.into()))
    );
    assert_eq!(
        value(&snap, names::CONNECTIONS, &ws),
        Some(&DebugValue::Gauge(1.0.into()))
    );
    // One message was handed to the socket (and abandoned there): one delay sample, 0 s.
    assert!(matches!(
        value(&snap, names::QUEUE_DELAY_SECONDS, &ws),
        Some(DebugValue::Histogram(samples)) if samples.len() == 1
    ));
    let drop_labels = |reason| [("ws", "test"), ("reason", reason), ("mode", "enforce")];
    assert_eq!(
        value(&snap, names::MESSAGES_DROPPED, &drop_labels("drop_newest")),
        Some(&DebugValue::Counter(4))
    );

    assert_eq!(within(task).await.unwrap(), CloseReason::SlowClient);
    drop(sender);
    // The debugging recorder resets what it reports at each snapshot: these are the changes
    // since the first one, which bring every gauge back to zero.
    let snap = snapshot(&snapshotter);
    assert_eq!(
        value(&snap, names::BUFFERED_BYTES, &ws),
        Some(&DebugValue::Gauge((-90.0).into()))
    );
    assert_eq!(
        value(&snap, names::BACKPRESSURED_CONNECTIONS, &ws),
        Some(&DebugValue::Gauge((-1.0).into()))
    );
    assert_eq!(
        value(&snap, names::CONNECTIONS, &ws),
        Some(&DebugValue::Gauge((-1.0).into()))
    );
    assert_eq!(
        value(&snap, names::MESSAGES_DROPPED, &drop_labels("disconnected")),
        Some(&DebugValue::Counter(3))
    );
    assert_eq!(
        value(
            &snap,
            names::SLOW_CLIENT_DISCONNECTS,
            &[("ws", "test"), ("mode", "enforce")]
        ),
        Some(&DebugValue::Counter(1))
    );
    assert_eq!(
        value(&snap, names::SLOW_CLIENTS, &ws),
        Some(&DebugValue::Counter(1))
    );
}

type Snapshot = Vec<(CompositeKey, DebugValue)>;

fn snapshot(snapshotter: &metrics_util::debugging::Snapshotter) -> Snapshot {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| (key, value))
        .collect()
}

fn value<'a>(
    snapshot: &'a Snapshot,
    name: &str,
    labels: &[(&str, &str)],
) -> Option<&'a DebugValue> {
    snapshot.iter().find_map(|(key, value)| {
        let matches = key.key().name() == name
            && key.key().labels().count() == labels.len()
            && labels.iter().all(|(k, v)| {
                key.key()
                    .labels()
                    .any(|label| label.key() == *k && label.value() == *v)
            });
        let _: MetricKind = key.kind();
        matches.then_some(value)
    })
}
