//! Configuration: plain data with documented defaults, a builder, and validation.

use std::{borrow::Cow, time::Duration};

use palisade_core::{ConfigError, EnforcementMode};

/// WebSocket close code 1008, *Policy Violation*: the default for slow clients (as
/// coder/websocket closes them: "too slow").
pub const CLOSE_POLICY_VIOLATION: u16 = 1008;

/// WebSocket close code 1013, *Try Again Later*: the server is overloaded, the client may
/// reconnect later.
pub const CLOSE_TRY_AGAIN_LATER: u16 = 1013;

/// The longest close reason a close frame can carry (125 bytes of control payload, less the
/// 2-byte code).
pub const MAX_CLOSE_REASON_BYTES: usize = 123;

/// The longest `slow_client_threshold`, `send_timeout` and `close_timeout` accepted (one hour).
pub const MAX_DURATION: Duration = Duration::from_secs(3600);

/// What to do with a slow client: one whose send queue stayed above high water (without draining
/// back to low water) for longer than `slow_client_threshold`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(rename_all = "snake_case")
)]
pub enum SlowClientAction {
    /// Close the connection with `slow_client_close_code` and `slow_client_close_reason` (the
    /// default). The close frame bypasses the queue; if even it cannot be written within
    /// `close_timeout`, the socket is dropped.
    #[default]
    Disconnect,
    /// Only report: count `palisade_ws_slow_clients_total`, log a warning and set
    /// [`QueueStats::slow`](crate::QueueStats::slow). The overflow policy keeps bounding the queue.
    Report,
}

/// What happens to a data message sent (with `try_send`) while the queue is backpressured: from
/// the moment it rose above high water until it drains to low water.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(rename_all = "snake_case")
)]
pub enum OverflowPolicy {
    /// Refuse the new message (the default; uWebSockets' `DROPPED`). What was accepted is
    /// delivered in order, with a gap after it.
    #[default]
    DropNewest,
    /// Accept the new message and drop the oldest queued data messages until the queue is back
    /// within high water. For feeds where fresh data matters more than complete data.
    DropOldest,
    /// Keep only the latest message per caller key (`try_send_keyed`): a keyed message replaces
    /// the queued message with the same key, in place (so it keeps that message's turn). A message
    /// with no queued counterpart, or with no key, is refused as under `DropNewest`. For state
    /// updates (positions, prices, presence), where only the latest value per key matters.
    Coalesce,
}

/// Configuration of bounded WebSocket send queues ([`Backpressure`](crate::Backpressure),
/// [`Hub`](crate::Hub)). Every connection gets its own queue with these limits.
///
/// | field | default | meaning |
/// |---|---|---|
/// | `name` | `default` | the `ws` label of the metrics |
/// | `send_buffer_high_water` | 1 MiB | payload bytes queued above which the queue is backpressured |
/// | `send_buffer_low_water` | 256 KiB | payload bytes at or below which backpressure is released |
/// | `max_queued_messages` | 4096 | messages queued above which the queue is backpressured (a 1 MiB queue of 256-byte messages); released at `max_queued_messages * low / high` (1024) |
/// | `overflow_policy` | drop newest | what `try_send` does while backpressured: [`OverflowPolicy`] |
/// | `slow_client_threshold` | 60 s | backpressured for longer than this = slow client |
/// | `slow_client_action` | disconnect | [`SlowClientAction`]: disconnect, or only report |
/// | `slow_client_close_code` | 1008 | close code of the disconnect: 1008 (policy violation), 1013 (try again later) or 3000-4999 |
/// | `slow_client_close_reason` | `too slow` | close reason, at most 123 bytes |
/// | `send_timeout` | 10 s | the longest `send().await` waits for the queue to drain to low water |
/// | `close_timeout` | 1 s | the longest the writer tries to write a close frame before dropping the socket |
/// | `socket_write_buffer_size` | 16 KiB | axum's (tungstenite's) own write buffer, set by [`Backpressure::configure`](crate::Backpressure::configure) (axum's default is 128 KiB) |
/// | `mode` | enforce | `observe_only` queues everything and keeps slow clients, but counts what it would have dropped and disconnected |
///
/// Sizes count payload bytes of data messages (text and binary) that are queued and not yet
/// handed to the socket. Control frames (ping, pong, close) are not counted: they bypass the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
#[non_exhaustive]
pub struct BackpressureConfig {
    /// The `ws` label of the metrics: which endpoint (or hub) the queues belong to.
    pub name: Cow<'static, str>,
    /// Payload bytes queued above which the queue is backpressured.
    pub send_buffer_high_water: usize,
    /// Payload bytes at or below which backpressure is released.
    pub send_buffer_low_water: usize,
    /// Messages queued above which the queue is backpressured.
    pub max_queued_messages: usize,
    /// What `try_send` does with data while backpressured.
    pub overflow_policy: OverflowPolicy,
    /// How long a queue may stay backpressured before its client is slow.
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration_secs"))]
    pub slow_client_threshold: Duration,
    /// What to do with a slow client.
    pub slow_client_action: SlowClientAction,
    /// The close code sent to a slow client.
    pub slow_client_close_code: u16,
    /// The close reason sent to a slow client.
    pub slow_client_close_reason: Cow<'static, str>,
    /// The longest `send().await` waits for room.
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration_secs"))]
    pub send_timeout: Duration,
    /// The longest the writer spends writing a close frame.
    #[cfg_attr(feature = "serde", serde(with = "palisade_core::duration_secs"))]
    pub close_timeout: Duration,
    /// axum's `WebSocketUpgrade::write_buffer_size`, applied by
    /// [`Backpressure::configure`](crate::Backpressure::configure).
    pub socket_write_buffer_size: usize,
    /// Enforce, or only observe.
    pub mode: EnforcementMode,
}

impl Default for BackpressureConfig {
    fn default() -> Self {
        Self {
            name: Cow::Borrowed("default"),
            send_buffer_high_water: 1024 * 1024,
            send_buffer_low_water: 256 * 1024,
            max_queued_messages: 4096,
            overflow_policy: OverflowPolicy::DropNewest,
            slow_client_threshold: Duration::from_secs(60),
            slow_client_action: SlowClientAction::Disconnect,
            slow_client_close_code: CLOSE_POLICY_VIOLATION,
            slow_client_close_reason: Cow::Borrowed("too slow"),
            send_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(1),
            socket_write_buffer_size: 16 * 1024,
            mode: EnforcementMode::Enforce,
        }
    }
}

impl BackpressureConfig {
    /// Checks the configuration.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field: a name that is not 1 to 64 characters of
    /// `[A-Za-z0-9_.-]`, a zero high water or message bound, low water above high water, a zero
    /// slow-client threshold, a duration above one hour, a close code other than 1008, 1013 or
    /// 3000-4999, or a close reason above 123 bytes.
    pub fn validate(&self) -> Result<(), ConfigError> {
        palisade_core::check_name(&self.name)?;
        if self.send_buffer_high_water == 0 {
            return Err(ConfigError::new(
                "send_buffer_high_water",
                "must be at least 1 byte",
            ));
        }
        if self.send_buffer_low_water > self.send_buffer_high_water {
            return Err(ConfigError::new(
                "send_buffer_low_water",
                format!(
                    "must not exceed send_buffer_high_water ({} > {})",
                    self.send_buffer_low_water, self.send_buffer_high_water
                ),
            ));
        }
        if self.max_queued_messages == 0 {
            return Err(ConfigError::new(
                "max_queued_messages",
                "must be at least 1",
            ));
        }
        if self.slow_client_threshold.is_zero() {
            return Err(ConfigError::new(
                "slow_client_threshold",
                "must be above zero (every burst would make a client slow)",
            ));
        }
        for (key, value) in [
            ("slow_client_threshold", self.slow_client_threshold),
            ("send_timeout", self.send_timeout),
            ("close_timeout", self.close_timeout),
        ] {
            if value > MAX_DURATION {
                return Err(ConfigError::new(key, "must be at most one hour"));
            }
        }
        let code = self.slow_client_close_code;
        if !(code == CLOSE_POLICY_VIOLATION
            || code == CLOSE_TRY_AGAIN_LATER
            || (3000..=4999).contains(&code))
        {
            return Err(ConfigError::new(
                "slow_client_close_code",
                format!("{code} must be 1008, 1013 or 3000-4999"),
            ));
        }
        if self.slow_client_close_reason.len() > MAX_CLOSE_REASON_BYTES {
            return Err(ConfigError::new(
                "slow_client_close_reason",
                format!("must be at most {MAX_CLOSE_REASON_BYTES} bytes"),
            ));
        }
        Ok(())
    }

    /// The message count at or below which backpressure is released: `max_queued_messages`
    /// scaled by low water / high water (1024 with the defaults).
    pub fn low_water_messages(&self) -> usize {
        let scaled = u128::from(self.max_queued_messages as u64)
            * u128::from(self.send_buffer_low_water as u64)
            / u128::from(self.send_buffer_high_water.max(1) as u64);
        usize::try_from(scaled).unwrap_or(usize::MAX)
    }
}

/// Builds a [`BackpressureConfig`]; every setter documents its default.
#[derive(Debug, Clone)]
#[must_use]
pub struct BackpressureBuilder {
    config: BackpressureConfig,
}

impl From<BackpressureConfig> for BackpressureBuilder {
    fn from(config: BackpressureConfig) -> Self {
        Self { config }
    }
}

impl BackpressureBuilder {
    /// The `ws` metric label. Default `default`.
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.config.name = name.into();
        self
    }

    /// Payload bytes above which a queue is backpressured. Default 1 MiB.
    pub fn send_buffer_high_water(mut self, bytes: usize) -> Self {
        self.config.send_buffer_high_water = bytes;
        self
    }

    /// Payload bytes at or below which backpressure is released. Default 256 KiB.
    pub fn send_buffer_low_water(mut self, bytes: usize) -> Self {
        self.config.send_buffer_low_water = bytes;
        self
    }

    /// Messages above which a queue is backpressured. Default 4096.
    pub fn max_queued_messages(mut self, messages: usize) -> Self {
        self.config.max_queued_messages = messages;
        self
    }

    /// What `try_send` does while backpressured. Default [`OverflowPolicy::DropNewest`].
    pub fn overflow_policy(mut self, policy: OverflowPolicy) -> Self {
        self.config.overflow_policy = policy;
        self
    }

    /// Backpressured for longer than this = slow client. Default 60 s.
    pub fn slow_client_threshold(mut self, threshold: Duration) -> Self {
        self.config.slow_client_threshold = threshold;
        self
    }

    /// What to do with a slow client. Default [`SlowClientAction::Disconnect`].
    pub fn slow_client_action(mut self, action: SlowClientAction) -> Self {
        self.config.slow_client_action = action;
        self
    }

    /// Close code and reason sent to a slow client. Default 1008 `too slow`.
    pub fn slow_client_close(mut self, code: u16, reason: impl Into<Cow<'static, str>>) -> Self {
        self.config.slow_client_close_code = code;
        self.config.slow_client_close_reason = reason.into();
        self
    }

    /// The longest `send().await` waits for the queue to drain to low water. Default 10 s.
    pub fn send_timeout(mut self, timeout: Duration) -> Self {
        self.config.send_timeout = timeout;
        self
    }

    /// The longest the writer spends writing a close frame. Default 1 s.
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.config.close_timeout = timeout;
        self
    }

    /// axum's own write buffer (`WebSocketUpgrade::write_buffer_size`). Default 16 KiB.
    pub fn socket_write_buffer_size(mut self, bytes: usize) -> Self {
        self.config.socket_write_buffer_size = bytes;
        self
    }

    palisade_core::enforcement_setters!(
        "count what would be dropped or disconnected, queue everything."
    );

    /// The configuration built so far.
    pub fn config(&self) -> &BackpressureConfig {
        &self.config
    }

    /// Validates the configuration and registers the metric handles.
    ///
    /// # Errors
    ///
    /// As [`BackpressureConfig::validate`].
    pub fn build(self) -> Result<crate::Backpressure, ConfigError> {
        crate::Backpressure::from_config(self.config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Backpressure;

    #[test]
    fn defaults_are_the_documented_ones_and_valid() {
        let config = BackpressureConfig::default();
        config.validate().unwrap();
        assert_eq!(config.send_buffer_high_water, 1 << 20);
        assert_eq!(config.send_buffer_low_water, 256 << 10);
        assert_eq!(config.max_queued_messages, 4096);
        assert_eq!(config.low_water_messages(), 1024);
        assert_eq!(config.slow_client_threshold, Duration::from_secs(60));
        assert_eq!(config.slow_client_action, SlowClientAction::Disconnect);
        assert_eq!(config.slow_client_close_code, CLOSE_POLICY_VIOLATION);
        assert_eq!(config.overflow_policy, OverflowPolicy::DropNewest);
        assert!(config.mode.enforces());
    }

    #[test]
    fn the_builder_sets_every_field_and_validates() {
        let config = Backpressure::builder()
            .name("prices")
            .send_buffer_high_water(1000)
            .send_buffer_low_water(100)
            .max_queued_messages(10)
            .overflow_policy(OverflowPolicy::Coalesce)
            .slow_client_threshold(Duration::from_millis(500))
            .slow_client_action(SlowClientAction::Report)
            .slow_client_close(CLOSE_TRY_AGAIN_LATER, "busy")
            .send_timeout(Duration::from_secs(1))
            .close_timeout(Duration::from_millis(100))
            .socket_write_buffer_size(0)
            .mode(EnforcementMode::ObserveOnly)
            .build()
            .unwrap();
        let config = config.config();
        assert_eq!(config.name, "prices");
        assert_eq!(config.low_water_messages(), 1);
        assert_eq!(config.slow_client_close_code, 1013);
        assert_eq!(config.overflow_policy, OverflowPolicy::Coalesce);
        assert!(!config.mode.enforces());
    }

    #[test]
    fn nonsense_is_an_error_naming_the_field() {
        let key = |c: BackpressureConfig| c.validate().unwrap_err().key().to_owned();
        let d = BackpressureConfig::default;
        let cases = [
            (
                BackpressureConfig {
                    name: "a b".into(),
                    ..d()
                },
                "name",
            ),
            (
                BackpressureConfig {
                    send_buffer_high_water: 0,
                    send_buffer_low_water: 0,
                    ..d()
                },
                "send_buffer_high_water",
            ),
            (
                BackpressureConfig {
                    send_buffer_low_water: 2 << 20,
                    ..d()
                },
                "send_buffer_low_water",
            ),
            (
                BackpressureConfig {
                    max_queued_messages: 0,
                    ..d()
                },
                "max_queued_messages",
            ),
            (
                BackpressureConfig {
                    slow_client_threshold: Duration::ZERO,
                    ..d()
                },
                "slow_client_threshold",
            ),
            (
                BackpressureConfig {
                    send_timeout: Duration::from_secs(3601),
                    ..d()
                },
                "send_timeout",
            ),
            (
                BackpressureConfig {
                    slow_client_close_code: 1000,
                    ..d()
                },
                "slow_client_close_code",
            ),
            (
                BackpressureConfig {
                    slow_client_close_reason: "x".repeat(124).into(),
                    ..d()
                },
                "slow_client_close_reason",
            ),
        ];
        for (config, expected) in cases {
            assert_eq!(key(config), expected);
        }
        // Equal marks are allowed (no hysteresis), as are private close codes.
        BackpressureConfig {
            send_buffer_low_water: 1 << 20,
            slow_client_close_code: 4000,
            ..d()
        }
        .validate()
        .unwrap();
    }
}
