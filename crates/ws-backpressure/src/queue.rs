//! The send queue of one connection: plain data, no locking, no I/O, no clock of its own (the
//! caller passes `now`), so every rule is unit-tested directly.
//!
//! Two lanes:
//!
//! - **Control** (ping, pong, close) bypasses the data lane and is never refused. At most one ping
//!   and one pong wait: a newer one replaces an unsent one of the same kind (RFC 6455 5.5.3 lets an
//!   endpoint answer only the latest ping; a ping superseded before it was sent would only be
//!   answered late). A close discards the data lane: it is the way out of a stalled queue.
//! - **Data** (text, binary) is a FIFO bounded in payload bytes and in messages, with hysteresis:
//!   the queue becomes *backpressured* when a push takes it above high water (bytes or messages)
//!   and stays so until the writer drains it to low water. While backpressured the
//!   [`OverflowPolicy`] decides what happens to new messages, and the time since it started is the
//!   slow-client clock. A client that reads slowly but keeps dipping below high water is still
//!   slow: only draining to low water stops the clock.
//!
//! Accounting counts payload bytes that are queued and not yet handed to the socket; the message
//! the writer holds while the socket is blocked is no longer counted. So with drop-newest the
//! counted bytes never exceed high water plus one message.

use std::collections::{HashMap, VecDeque};

use axum::extract::ws::{CloseFrame, Message};
use bytes::Bytes;
use tokio::time::{Duration, Instant};

use crate::config::{BackpressureConfig, OverflowPolicy};

/// What happened to a message given to [`Sender::try_send`](crate::Sender::try_send).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[must_use = "a message may have been dropped"]
pub enum SendOutcome {
    /// Queued; the queue is within its limits.
    Queued,
    /// Queued, but the queue is backpressured (above high water, not yet drained to low water):
    /// a producer that can slow down should. Under [`OverflowPolicy::DropOldest`] or
    /// [`OverflowPolicy::Coalesce`] older messages may have made room for it.
    Backpressured,
    /// Not queued: refused by the overflow policy.
    Dropped(DropReason),
    /// Not queued: the connection is closing or closed.
    Closed,
}

impl SendOutcome {
    /// Whether the message was queued (with or without backpressure).
    pub const fn is_queued(self) -> bool {
        matches!(self, Self::Queued | Self::Backpressured)
    }
}

/// Why data messages were dropped: the `reason` label of `palisade_ws_messages_dropped_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// A new message refused while backpressured ([`OverflowPolicy::DropNewest`], or a message
    /// with nothing to coalesce with under [`OverflowPolicy::Coalesce`]).
    DropNewest,
    /// A queued message dropped to make room for a new one ([`OverflowPolicy::DropOldest`]).
    DropOldest,
    /// A queued message replaced by a newer one with the same key ([`OverflowPolicy::Coalesce`]).
    Coalesced,
    /// Queued messages discarded because the connection closed before they were written.
    Disconnected,
}

impl DropReason {
    /// Every reason, in label order.
    pub const ALL: [DropReason; 4] = [
        Self::DropNewest,
        Self::DropOldest,
        Self::Coalesced,
        Self::Disconnected,
    ];

    /// The metric label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::DropNewest => "drop_newest",
            Self::DropOldest => "drop_oldest",
            Self::Coalesced => "coalesced",
            Self::Disconnected => "disconnected",
        }
    }
}

/// Why a connection's queue closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// The client closed the connection (close frame or end of stream).
    ClientClosed,
    /// The slow-client policy disconnected it.
    SlowClient,
    /// The application closed it ([`Sender::close`](crate::Sender::close), a `Close` message, or
    /// [`Hub::close_all`](crate::Hub::close_all)).
    ServerClosed,
    /// Every [`Sender`](crate::Sender) was dropped and the queue was drained.
    SendersDropped,
    /// Reading from or writing to the socket failed.
    Error,
}

/// A snapshot of one connection's queue, from [`Sender::stats`](crate::Sender::stats).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueStats {
    /// Payload bytes queued and not yet handed to the socket.
    pub buffered_bytes: usize,
    /// Data messages queued.
    pub queued_messages: usize,
    /// The most payload bytes ever queued at once on this connection.
    pub peak_buffered_bytes: usize,
    /// Since when the queue has been backpressured, if it is.
    pub backpressured_since: Option<Instant>,
    /// Whether the current backpressure episode has lasted past the slow-client threshold.
    pub slow: bool,
    /// Data messages handed to the socket.
    pub written_messages: u64,
    /// Data messages dropped, for any [`DropReason`].
    pub dropped_messages: u64,
    /// Why the queue closed, once it has started to close.
    pub closed: Option<CloseReason>,
}

/// The limits of one queue, taken from the configuration once.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) high_bytes: usize,
    pub(crate) low_bytes: usize,
    pub(crate) high_messages: usize,
    pub(crate) low_messages: usize,
    pub(crate) policy: OverflowPolicy,
    pub(crate) slow_after: Duration,
    pub(crate) enforce: bool,
}

impl Limits {
    pub(crate) fn new(config: &BackpressureConfig) -> Self {
        Self {
            high_bytes: config.send_buffer_high_water,
            low_bytes: config.send_buffer_low_water,
            high_messages: config.max_queued_messages,
            low_messages: config.low_water_messages(),
            policy: config.overflow_policy,
            slow_after: config.slow_client_threshold,
            enforce: config.mode.enforces(),
        }
    }
}

/// The result of a push, for the caller to turn into metrics and wake-ups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pushed {
    pub(crate) outcome: SendOutcome,
    /// Change of the queued payload bytes (added minus dropped).
    pub(crate) bytes_delta: isize,
    /// Messages dropped (or, observing only, that would have been), and why.
    pub(crate) dropped: Option<(DropReason, u64)>,
    /// The push started a backpressure episode.
    pub(crate) backpressure_started: bool,
    /// The writer is parked and has work now, or must re-read its deadline.
    pub(crate) wake_writer: bool,
}

impl Pushed {
    fn simple(outcome: SendOutcome) -> Self {
        Self {
            outcome,
            bytes_delta: 0,
            dropped: None,
            backpressure_started: false,
            wake_writer: false,
        }
    }
}

/// What the writer does next.
#[derive(Debug)]
pub(crate) enum Next {
    /// Write this control frame.
    Control(Message),
    /// Write this data message.
    Data(Popped),
    /// Write this close frame (if any), then stop.
    Close(Option<CloseFrame>, CloseReason),
    /// Stop: the queue is closing and its close frame (if any) was taken, or every sender is
    /// gone and the queue is drained (`SendersDropped`).
    Stop(CloseReason),
    /// Nothing to do: wait to be woken.
    Idle,
}

/// A data message taken by the writer.
#[derive(Debug)]
pub(crate) struct Popped {
    pub(crate) message: Message,
    pub(crate) bytes: usize,
    pub(crate) enqueued: Instant,
    /// Taking it released backpressure (the queue reached low water).
    pub(crate) released: bool,
}

/// Data discarded when the queue closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Discarded {
    pub(crate) messages: u64,
    pub(crate) bytes: usize,
    /// The queue was backpressured when it closed.
    pub(crate) was_backpressured: bool,
}

#[derive(Debug)]
struct Entry {
    message: Message,
    bytes: usize,
    key: Option<u64>,
    enqueued: Instant,
}

#[derive(Debug)]
enum State {
    Open,
    /// Closing: `frame` is still to be written when `pending`.
    Closing {
        frame: Option<CloseFrame>,
        reason: CloseReason,
        pending: bool,
    },
}

/// The payload size of a data message; `None` for control frames.
pub(crate) fn data_len(message: &Message) -> Option<usize> {
    match message {
        Message::Text(text) => Some(text.len()),
        Message::Binary(bytes) => Some(bytes.len()),
        Message::Ping(_) | Message::Pong(_) | Message::Close(_) => None,
    }
}

/// One connection's queue.
#[derive(Debug)]
pub(crate) struct Queue {
    limits: Limits,
    data: VecDeque<Entry>,
    /// Sequence number of `data[0]`; entries are removed only at the front, so the entry with
    /// sequence `s` is at index `s - front_seq`.
    front_seq: u64,
    /// Coalesce key -> sequence of the latest queued message with that key (coalesce policy only).
    keys: HashMap<u64, u64>,
    bytes: usize,
    peak_bytes: usize,
    ping: Option<Bytes>,
    pong: Option<Bytes>,
    backpressured_since: Option<Instant>,
    slow: bool,
    state: State,
    senders_gone: bool,
    /// The writer found nothing to do and waits for a wake-up.
    writer_parked: bool,
    written: u64,
    dropped: u64,
}

impl Queue {
    pub(crate) fn new(limits: Limits) -> Self {
        Self {
            limits,
            data: VecDeque::new(),
            front_seq: 0,
            keys: HashMap::new(),
            bytes: 0,
            peak_bytes: 0,
            ping: None,
            pong: None,
            backpressured_since: None,
            slow: false,
            state: State::Open,
            senders_gone: false,
            writer_parked: false,
            written: 0,
            dropped: 0,
        }
    }

    pub(crate) fn is_open(&self) -> bool {
        matches!(self.state, State::Open)
    }

    pub(crate) fn is_backpressured(&self) -> bool {
        self.backpressured_since.is_some()
    }

    pub(crate) fn stats(&self) -> QueueStats {
        QueueStats {
            buffered_bytes: self.bytes,
            queued_messages: self.data.len(),
            peak_buffered_bytes: self.peak_bytes,
            backpressured_since: self.backpressured_since,
            slow: self.slow,
            written_messages: self.written,
            dropped_messages: self.dropped,
            closed: match self.state {
                State::Open => None,
                State::Closing { reason, .. } => Some(reason),
            },
        }
    }

    fn above_high_water(&self) -> bool {
        self.bytes > self.limits.high_bytes || self.data.len() > self.limits.high_messages
    }

    fn at_low_water(&self) -> bool {
        self.bytes <= self.limits.low_bytes && self.data.len() <= self.limits.low_messages
    }

    /// Queues `message` (with an optional coalesce key), applying the overflow policy.
    pub(crate) fn push(&mut self, message: Message, key: Option<u64>, now: Instant) -> Pushed {
        if !self.is_open() {
            return Pushed::simple(SendOutcome::Closed);
        }
        match message {
            Message::Ping(payload) => self.push_control(|q| q.ping = Some(payload)),
            Message::Pong(payload) => self.push_control(|q| q.pong = Some(payload)),
            Message::Close(frame) => {
                // Closing is done by `close`, which also reports what it discarded; a close frame
                // that reaches `push` means the same.
                let _ = self.close(CloseReason::ServerClosed, frame);
                let mut pushed = Pushed::simple(SendOutcome::Queued);
                pushed.wake_writer = true;
                pushed
            }
            Message::Text(_) | Message::Binary(_) => self.push_data(message, key, now),
        }
    }

    fn push_control(&mut self, set: impl FnOnce(&mut Self)) -> Pushed {
        set(self);
        let mut pushed = Pushed::simple(SendOutcome::Queued);
        pushed.wake_writer = std::mem::take(&mut self.writer_parked);
        pushed
    }

    fn push_data(&mut self, message: Message, key: Option<u64>, now: Instant) -> Pushed {
        let bytes = data_len(&message).unwrap_or(0);
        let mut dropped = None;
        if self.is_backpressured() {
            let coalesce_with = match (self.limits.policy, key) {
                (OverflowPolicy::Coalesce, Some(key)) => self.keys.get(&key).copied(),
                _ => None,
            };
            match (self.limits.policy, coalesce_with) {
                (OverflowPolicy::Coalesce, Some(seq)) => {
                    if self.limits.enforce {
                        return self.replace(seq, message, bytes);
                    }
                    dropped = Some((DropReason::Coalesced, 1));
                }
                (OverflowPolicy::DropOldest, _) => {
                    // Handled after the push: drop from the front until within high water.
                }
                _ => {
                    if self.limits.enforce {
                        self.dropped += 1;
                        return Pushed {
                            dropped: Some((DropReason::DropNewest, 1)),
                            ..Pushed::simple(SendOutcome::Dropped(DropReason::DropNewest))
                        };
                    }
                    dropped = Some((DropReason::DropNewest, 1));
                }
            }
        }

        let seq = self.front_seq + self.data.len() as u64;
        if self.limits.policy == OverflowPolicy::Coalesce
            && let Some(key) = key
        {
            self.keys.insert(key, seq);
        }
        self.data.push_back(Entry {
            message,
            bytes,
            key,
            enqueued: now,
        });
        self.bytes += bytes;
        let mut bytes_delta = signed(bytes);

        if self.is_backpressured() && self.limits.policy == OverflowPolicy::DropOldest {
            if self.limits.enforce {
                let mut count = 0;
                while self.above_high_water() && self.data.len() > 1 {
                    let entry = self.pop_front().expect("more than one entry");
                    bytes_delta -= signed(entry.bytes);
                    count += 1;
                }
                self.dropped += count;
                if count > 0 {
                    dropped = Some((DropReason::DropOldest, count));
                }
            } else if self.above_high_water() {
                dropped = Some((DropReason::DropOldest, 1));
            }
        }
        self.peak_bytes = self.peak_bytes.max(self.bytes);

        let mut backpressure_started = false;
        if !self.is_backpressured() && self.above_high_water() {
            self.backpressured_since = Some(now);
            backpressure_started = true;
        }
        // Wake a parked writer (it has work now); a busy writer only needs to hear that the
        // slow-client clock started, to arm its deadline.
        let wake_writer = std::mem::take(&mut self.writer_parked) || backpressure_started;
        Pushed {
            outcome: if self.is_backpressured() {
                SendOutcome::Backpressured
            } else {
                SendOutcome::Queued
            },
            bytes_delta,
            dropped,
            backpressure_started,
            wake_writer,
        }
    }

    /// Coalesce: `message` takes the place (and the turn) of the queued message `seq`.
    fn replace(&mut self, seq: u64, message: Message, bytes: usize) -> Pushed {
        let index = usize::try_from(seq - self.front_seq).expect("index within the queue");
        let entry = &mut self.data[index];
        let old = std::mem::replace(&mut entry.bytes, bytes);
        entry.message = message;
        self.bytes = self.bytes - old + bytes;
        self.peak_bytes = self.peak_bytes.max(self.bytes);
        self.dropped += 1;
        Pushed {
            bytes_delta: signed(bytes) - signed(old),
            dropped: Some((DropReason::Coalesced, 1)),
            ..Pushed::simple(SendOutcome::Backpressured)
        }
    }

    fn pop_front(&mut self) -> Option<Entry> {
        let entry = self.data.pop_front()?;
        if let Some(key) = entry.key
            && self.keys.get(&key) == Some(&self.front_seq)
        {
            self.keys.remove(&key);
        }
        self.front_seq += 1;
        self.bytes -= entry.bytes;
        Some(entry)
    }

    /// The writer's next step: close first, then control frames, then data.
    pub(crate) fn next(&mut self) -> Next {
        if let State::Closing {
            frame,
            reason,
            pending,
        } = &mut self.state
        {
            if std::mem::take(pending) {
                return Next::Close(frame.take(), *reason);
            }
            return Next::Stop(*reason);
        }
        if let Some(payload) = self.pong.take() {
            return Next::Control(Message::Pong(payload));
        }
        if let Some(payload) = self.ping.take() {
            return Next::Control(Message::Ping(payload));
        }
        if let Some(entry) = self.pop_front() {
            self.written += 1;
            let released = self.is_backpressured() && self.at_low_water();
            if released {
                self.backpressured_since = None;
                self.slow = false;
            }
            return Next::Data(Popped {
                message: entry.message,
                bytes: entry.bytes,
                enqueued: entry.enqueued,
                released,
            });
        }
        if self.senders_gone {
            Next::Stop(CloseReason::SendersDropped)
        } else {
            Next::Idle
        }
    }

    /// Marks the writer parked: the next push wakes it.
    pub(crate) fn park_writer(&mut self) {
        self.writer_parked = true;
    }

    /// When the slow-client clock of the current episode runs out, unless already given.
    pub(crate) fn slow_deadline(&self) -> Option<Instant> {
        match self.backpressured_since {
            Some(since) if !self.slow && self.is_open() => Some(since + self.limits.slow_after),
            _ => None,
        }
    }

    /// Whether the client became slow at `now` (once per backpressure episode).
    pub(crate) fn check_slow(&mut self, now: Instant) -> bool {
        match self.slow_deadline() {
            Some(deadline) if now >= deadline => {
                self.slow = true;
                true
            }
            _ => false,
        }
    }

    /// Starts closing: discards the data and control lanes and schedules `frame` (if any) as the
    /// last frame. Returns what was discarded, or `None` if the queue was already closing.
    pub(crate) fn close(
        &mut self,
        reason: CloseReason,
        frame: Option<CloseFrame>,
    ) -> Option<Discarded> {
        if !self.is_open() {
            return None;
        }
        let discarded = Discarded {
            messages: self.data.len() as u64,
            bytes: self.bytes,
            was_backpressured: self.backpressured_since.take().is_some(),
        };
        self.dropped += discarded.messages;
        self.data.clear();
        self.keys.clear();
        self.bytes = 0;
        self.ping = None;
        self.pong = None;
        self.state = State::Closing {
            frame,
            reason,
            // A close frame is written only when the server closes; when the client went away
            // or the socket failed the writer just stops.
            pending: matches!(reason, CloseReason::ServerClosed | CloseReason::SlowClient),
        };
        Some(discarded)
    }

    /// Every sender is gone: once drained, the writer stops.
    pub(crate) fn senders_gone(&mut self) -> bool {
        self.senders_gone = true;
        std::mem::take(&mut self.writer_parked)
    }
}

fn signed(bytes: usize) -> isize {
    isize::try_from(bytes).unwrap_or(isize::MAX)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn limits(policy: OverflowPolicy) -> Limits {
        Limits {
            high_bytes: 100,
            low_bytes: 40,
            high_messages: 8,
            low_messages: 2,
            policy,
            slow_after: Duration::from_secs(5),
            enforce: true,
        }
    }

    fn msg(len: usize, tag: u8) -> Message {
        Message::Binary(Bytes::from(vec![tag; len]))
    }

    fn tag(message: &Message) -> u8 {
        match message {
            Message::Binary(b) => b[0],
            other => panic!("not binary: {other:?}"),
        }
    }

    fn drain(queue: &mut Queue) -> Vec<u8> {
        let mut tags = Vec::new();
        while let Next::Data(popped) = queue.next() {
            tags.push(tag(&popped.message));
        }
        tags
    }

    #[test]
    fn bytes_and_messages_are_accounted_on_push_and_pop() {
        let now = Instant::now();
        let mut q = Queue::new(limits(OverflowPolicy::DropNewest));
        let pushed = q.push(msg(30, 1), None, now);
        assert_eq!(pushed.outcome, SendOutcome::Queued);
        assert_eq!(pushed.bytes_delta, 30);
        assert!(
            q.push(Message::Text("hello".into()), None, now)
                .outcome
                .is_queued()
        );
        assert_eq!(
            (q.stats().buffered_bytes, q.stats().queued_messages),
            (35, 2)
        );
        let Next::Data(popped) = q.next() else {
            panic!("data expected")
        };
        assert_eq!((popped.bytes, popped.enqueued), (30, now));
        assert_eq!(
            (q.stats().buffered_bytes, q.stats().queued_messages),
            (5, 1)
        );
        assert!(matches!(q.next(), Next::Data(p) if p.bytes == 5));
        assert!(matches!(q.next(), Next::Idle));
        let stats = q.stats();
        assert_eq!((stats.buffered_bytes, stats.queued_messages), (0, 0));
        assert_eq!((stats.peak_buffered_bytes, stats.written_messages), (35, 2));
    }

    #[test]
    fn crossing_high_water_backpressures_and_low_water_releases() {
        let now = Instant::now();
        let mut q = Queue::new(limits(OverflowPolicy::DropNewest));
        for i in 0..3 {
            assert_eq!(q.push(msg(30, i), None, now).outcome, SendOutcome::Queued);
        }
        // 90 bytes: at most high water (100) is not above it.
        assert!(!q.is_backpressured());
        let pushed = q.push(msg(30, 3), None, now);
        assert_eq!(pushed.outcome, SendOutcome::Backpressured);
        assert!(pushed.backpressure_started && pushed.wake_writer);
        assert_eq!(q.stats().backpressured_since, Some(now));
        // 120 -> 90 -> 60: still above low water (40), still backpressured.
        for _ in 0..2 {
            let Next::Data(popped) = q.next() else {
                panic!()
            };
            assert!(!popped.released);
        }
        assert!(q.is_backpressured());
        // 60 -> 30: at or below low water: released.
        let Next::Data(popped) = q.next() else {
            panic!()
        };
        assert!(popped.released);
        assert!(!q.is_backpressured());
        assert_eq!(q.push(msg(10, 9), None, now).outcome, SendOutcome::Queued);
    }

    #[test]
    fn the_message_bound_backpressures_like_the_byte_bound() {
        let now = Instant::now();
        let mut q = Queue::new(limits(OverflowPolicy::DropNewest));
        for i in 0..8 {
            assert_eq!(q.push(msg(1, i), None, now).outcome, SendOutcome::Queued);
        }
        assert_eq!(
            q.push(msg(1, 8), None, now).outcome,
            SendOutcome::Backpressured
        );
        assert_eq!(
            q.push(msg(1, 9), None, now).outcome,
            SendOutcome::Dropped(DropReason::DropNewest)
        );
        // 9 queued; release at 2 messages (bytes are far below low water all along).
        for expected_release in [false, false, false, false, false, false, true] {
            let Next::Data(popped) = q.next() else {
                panic!()
            };
            assert_eq!(popped.released, expected_release);
        }
    }

    #[test]
    fn drop_newest_refuses_until_low_water_and_keeps_order() {
        let now = Instant::now();
        let mut q = Queue::new(limits(OverflowPolicy::DropNewest));
        for i in 0..4 {
            let _ = q.push(msg(30, i), None, now);
        }
        for i in 4..7 {
            let pushed = q.push(msg(30, i), None, now);
            assert_eq!(pushed.outcome, SendOutcome::Dropped(DropReason::DropNewest));
            assert_eq!(pushed.dropped, Some((DropReason::DropNewest, 1)));
            assert_eq!(pushed.bytes_delta, 0);
        }
        // The bound: high water plus one message.
        assert_eq!(q.stats().peak_buffered_bytes, 120);
        assert_eq!(q.stats().dropped_messages, 3);
        // Drained to 90 and 60: above low water, new data is still refused (hysteresis).
        let _ = q.next();
        let _ = q.next();
        assert!(!q.push(msg(1, 7), None, now).outcome.is_queued());
        assert_eq!(drain(&mut q), vec![2, 3]);
        assert_eq!(q.push(msg(1, 8), None, now).outcome, SendOutcome::Queued);
        assert_eq!(drain(&mut q), vec![8]);
    }

    #[test]
    fn drop_oldest_keeps_the_newest_within_high_water() {
        let now = Instant::now();
        let mut q = Queue::new(limits(OverflowPolicy::DropOldest));
        for i in 0..4 {
            let _ = q.push(msg(30, i), None, now);
        }
        assert!(q.is_backpressured());
        // 120 + 30 = 150: drop 0 and 1 (to 90).
        let pushed = q.push(msg(30, 4), None, now);
        assert_eq!(pushed.outcome, SendOutcome::Backpressured);
        assert_eq!(pushed.dropped, Some((DropReason::DropOldest, 2)));
        assert_eq!(pushed.bytes_delta, 30 - 60);
        assert_eq!(q.stats().buffered_bytes, 90);
        // A message larger than high water alone evicts everything else but is kept.
        let pushed = q.push(msg(150, 5), None, now);
        assert_eq!(pushed.dropped, Some((DropReason::DropOldest, 3)));
        assert_eq!(q.stats().buffered_bytes, 150);
        assert_eq!(drain(&mut q), vec![5]);
        assert_eq!(q.stats().dropped_messages, 5);
    }

    #[test]
    fn coalesce_replaces_the_queued_message_with_the_same_key_in_place() {
        let now = Instant::now();
        let mut q = Queue::new(limits(OverflowPolicy::Coalesce));
        // Keys 1..=4, 30 bytes each: backpressured at the fourth.
        for key in 1..=4u8 {
            let _ = q.push(msg(30, key), Some(u64::from(key)), now);
        }
        assert!(q.is_backpressured());
        // Key 2 again (payload tag 22, smaller): replaces tag 2 at its place.
        let pushed = q.push(msg(10, 22), Some(2), now);
        assert_eq!(pushed.outcome, SendOutcome::Backpressured);
        assert_eq!(pushed.dropped, Some((DropReason::Coalesced, 1)));
        assert_eq!(pushed.bytes_delta, -20);
        assert_eq!(q.stats().buffered_bytes, 100);
        assert_eq!(q.stats().queued_messages, 4);
        // An unknown key, or no key, has nothing to coalesce with: refused.
        assert_eq!(
            q.push(msg(10, 5), Some(5), now).outcome,
            SendOutcome::Dropped(DropReason::DropNewest)
        );
        assert_eq!(
            q.push(msg(10, 6), None, now).outcome,
            SendOutcome::Dropped(DropReason::DropNewest)
        );
        // Pop key 1; key 1 again has nothing queued to replace.
        assert_eq!(tag(&pop(&mut q)), 1);
        assert!(!q.push(msg(1, 11), Some(1), now).outcome.is_queued());
        assert_eq!(drain(&mut q), vec![22, 3, 4]);
    }

    fn pop(q: &mut Queue) -> Message {
        match q.next() {
            Next::Data(popped) => popped.message,
            other => panic!("data expected, got {other:?}"),
        }
    }

    #[test]
    fn coalesce_only_applies_while_backpressured() {
        let now = Instant::now();
        let mut q = Queue::new(limits(OverflowPolicy::Coalesce));
        let _ = q.push(msg(10, 1), Some(7), now);
        assert_eq!(
            q.push(msg(10, 2), Some(7), now).outcome,
            SendOutcome::Queued
        );
        assert_eq!(drain(&mut q), vec![1, 2]);
    }

    #[test]
    fn observe_only_queues_everything_and_reports_what_it_would_drop() {
        let now = Instant::now();
        for (policy, reason) in [
            (OverflowPolicy::DropNewest, DropReason::DropNewest),
            (OverflowPolicy::DropOldest, DropReason::DropOldest),
            (OverflowPolicy::Coalesce, DropReason::Coalesced),
        ] {
            let mut q = Queue::new(Limits {
                enforce: false,
                ..limits(policy)
            });
            for i in 0..4 {
                let _ = q.push(msg(30, i), Some(1), now);
            }
            let pushed = q.push(msg(30, 4), Some(1), now);
            assert_eq!(pushed.outcome, SendOutcome::Backpressured, "{policy:?}");
            assert_eq!(pushed.dropped, Some((reason, 1)), "{policy:?}");
            assert_eq!(pushed.bytes_delta, 30);
            assert_eq!(drain(&mut q), vec![0, 1, 2, 3, 4], "{policy:?}");
            assert_eq!(q.stats().dropped_messages, 0);
        }
    }

    #[test]
    fn control_frames_bypass_the_full_data_lane_and_are_never_refused() {
        let now = Instant::now();
        let mut q = Queue::new(limits(OverflowPolicy::DropNewest));
        for i in 0..5 {
            let _ = q.push(msg(30, i), None, now);
        }
        assert!(q.is_backpressured());
        let ping = q.push(Message::Ping(Bytes::from_static(b"p1")), None, now);
        assert_eq!(ping.outcome, SendOutcome::Queued);
        assert_eq!(ping.bytes_delta, 0, "control frames are not counted");
        let _ = q.push(Message::Pong(Bytes::from_static(b"old")), None, now);
        let _ = q.push(Message::Pong(Bytes::from_static(b"new")), None, now);
        assert!(matches!(q.next(), Next::Control(Message::Pong(p)) if p == "new"));
        assert!(matches!(q.next(), Next::Control(Message::Ping(p)) if p == "p1"));
        assert_eq!(tag(&pop(&mut q)), 0);
        // A close discards the data lane and goes out next, once.
        let _ = q.push(Message::Ping(Bytes::new()), None, now);
        let frame = CloseFrame {
            code: 1001,
            reason: "bye".into(),
        };
        let pushed = q.push(Message::Close(Some(frame.clone())), None, now);
        assert_eq!(pushed.outcome, SendOutcome::Queued);
        assert_eq!(q.stats().buffered_bytes, 0);
        assert_eq!(q.stats().closed, Some(CloseReason::ServerClosed));
        assert!(matches!(q.next(), Next::Close(Some(f), CloseReason::ServerClosed) if f == frame));
        assert!(matches!(q.next(), Next::Stop(CloseReason::ServerClosed)));
        assert_eq!(
            q.push(msg(1, 1), None, now).outcome,
            SendOutcome::Closed,
            "closed for data"
        );
        assert_eq!(
            q.push(Message::Ping(Bytes::new()), None, now).outcome,
            SendOutcome::Closed
        );
    }

    #[test]
    fn close_reports_what_it_discarded_and_releases_backpressure() {
        let now = Instant::now();
        let mut q = Queue::new(limits(OverflowPolicy::DropNewest));
        for i in 0..4 {
            let _ = q.push(msg(30, i), None, now);
        }
        let discarded = q.close(CloseReason::ClientClosed, None).unwrap();
        assert_eq!(
            discarded,
            Discarded {
                messages: 4,
                bytes: 120,
                was_backpressured: true
            }
        );
        assert!(q.close(CloseReason::Error, None).is_none(), "only once");
        // The client went away: no close frame to write, the writer just stops.
        assert!(matches!(q.next(), Next::Stop(CloseReason::ClientClosed)));
        assert_eq!(q.stats().closed, Some(CloseReason::ClientClosed));
        assert_eq!(q.slow_deadline(), None);
    }

    #[test]
    fn the_slow_client_clock_runs_while_backpressured_and_fires_once() {
        let start = Instant::now();
        let mut q = Queue::new(limits(OverflowPolicy::DropNewest));
        assert_eq!(q.slow_deadline(), None);
        for i in 0..4 {
            let _ = q.push(msg(30, i), None, start);
        }
        let deadline = start + Duration::from_secs(5);
        assert_eq!(q.slow_deadline(), Some(deadline));
        assert!(!q.check_slow(deadline - Duration::from_millis(1)));
        // Draining below high water but not to low water does not stop the clock.
        let _ = q.next();
        assert_eq!(q.slow_deadline(), Some(deadline));
        assert!(q.check_slow(deadline));
        assert!(q.stats().slow);
        assert!(!q.check_slow(deadline), "once per episode");
        assert_eq!(q.slow_deadline(), None);
        // Low water ends the episode; the next one has a fresh clock.
        let _ = q.next();
        let _ = q.next();
        assert!(!q.is_backpressured() && !q.stats().slow);
        let later = deadline + Duration::from_secs(1);
        for i in 0..4 {
            let _ = q.push(msg(30, i), None, later);
        }
        assert_eq!(q.slow_deadline(), Some(later + Duration::from_secs(5)));
    }

    #[test]
    fn a_parked_writer_is_woken_once_and_a_busy_one_only_for_its_deadline() {
        let now = Instant::now();
        let mut q = Queue::new(limits(OverflowPolicy::DropNewest));
        assert!(matches!(q.next(), Next::Idle));
        q.park_writer();
        assert!(q.push(msg(30, 0), None, now).wake_writer);
        assert!(!q.push(msg(30, 1), None, now).wake_writer);
        assert!(!q.push(msg(30, 2), None, now).wake_writer);
        assert!(q.push(msg(30, 3), None, now).wake_writer, "deadline armed");
        q.park_writer();
        assert!(q.push(Message::Ping(Bytes::new()), None, now).wake_writer);
    }

    #[test]
    fn senders_gone_drains_then_stops() {
        let now = Instant::now();
        let mut q = Queue::new(limits(OverflowPolicy::DropNewest));
        let _ = q.push(msg(1, 1), None, now);
        q.park_writer();
        assert!(q.senders_gone(), "wakes the parked writer");
        assert_eq!(tag(&pop(&mut q)), 1);
        assert!(matches!(q.next(), Next::Stop(CloseReason::SendersDropped)));
    }
}
