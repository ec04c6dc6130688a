//! [`RedisBackend`]: every policy of a request checked and charged in one `EVALSHA`, under a
//! deadline and a circuit breaker, with a local limit to fall back on.

use std::{
    fmt,
    sync::{
        Arc, OnceLock, Weak,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use palisade_circuit_breaker::{Breaker, State};
use palisade_core::ConfigError;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::time::Instant;

use super::{
    BackendState,
    config::{FailMode, RedisConfig},
    lease::{Lease, Leases},
    metrics::{Call, RedisMetrics},
};
use crate::{
    backend::{BackendUnavailable, BoxError, Check, Decision, Pending, PolicyState},
    gcra::Gcra,
    key::Key,
    metrics::StoreMetrics,
    policy::Policy,
    store::{LocalStore, PolicyStore},
};

/// A policy as the script sees it: its name in keys, and `T` and the tolerance in µs.
struct ScriptPolicy {
    name: Arc<str>,
    interval_us: String,
    tolerance_us: String,
    interval: Duration,
}

/// The Lua script, sent once and then called by its SHA-1 (`redis::Script` loads it again after
/// a `SCRIPT FLUSH` or a restart, on the `NOSCRIPT` answer).
static SCRIPT: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(include_str!("gcra.lua")));

struct Shared {
    config: RedisConfig,
    client: redis::Client,
    /// Created on first use, inside the runtime; it reconnects by itself after errors.
    connection: OnceLock<ConnectionManager>,
    policies: Box<[ScriptPolicy]>,
    breaker: Breaker,
    /// The limits of this replica alone, at `local_share`, while Redis is unreachable.
    fallback: LocalStore,
    epoch: Instant,
    leases: Option<Leases>,
    /// A background probe is running.
    probing: AtomicBool,
    metrics: RedisMetrics,
}

/// The Redis backend; built by the layer from a [`RedisConfig`].
pub(crate) struct RedisBackend {
    shared: Arc<Shared>,
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

/// The owned pairs of one request, for the asynchronous part.
struct Request {
    /// `(policy index, key)`, for the fallback.
    pairs: Vec<(usize, Key)>,
    /// The Redis keys, in the same order.
    keys: Vec<String>,
    /// The lease-table key of the tuple (0 without leases).
    lease_key: u64,
    wanted: u32,
}

impl RedisBackend {
    pub(crate) fn new(
        config: &RedisConfig,
        policies: &[Policy],
        max_keys: usize,
    ) -> Result<Self, ConfigError> {
        config.validate().map_err(|e| e.within("redis"))?;
        let client = redis::Client::open(config.url.as_str())
            .map_err(|e| ConfigError::new("redis.url", format!("not a Redis URL: {e}")))?;
        let metrics = RedisMetrics::new();
        metrics.state.set(BackendState::Shared.gauge());
        let breaker = breaker(config, &metrics)?;
        let share = config.local_share;
        let fallback = LocalStore::new(
            policies
                .iter()
                .map(|p| {
                    let scaled = |n: u32| {
                        // At least one request: a share never turns a policy into "refuse all".
                        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                        let scaled = (f64::from(n) * share).ceil() as u32;
                        scaled.max(1)
                    };
                    let gcra = Gcra::new(scaled(p.rate()), p.period(), scaled(p.burst()));
                    PolicyStore::new(gcra, max_keys, StoreMetrics::new(p.name()))
                })
                .collect(),
        );
        let policies = policies
            .iter()
            .map(|p| {
                let nanos = p.gcra.interval();
                #[allow(clippy::cast_precision_loss)]
                let micros = nanos as f64 / 1000.0;
                ScriptPolicy {
                    name: p.name().into(),
                    interval_us: micros.to_string(),
                    tolerance_us: (micros * f64::from(p.burst())).to_string(),
                    interval: Duration::from_nanos(nanos),
                }
            })
            .collect();
        Ok(Self {
            shared: Arc::new(Shared {
                leases: config
                    .leases()
                    .then(|| Leases::new(config.lease_size, config.lease_ttl)),
                config: config.clone(),
                client,
                connection: OnceLock::new(),
                policies,
                breaker,
                fallback,
                epoch: Instant::now(),
                probing: AtomicBool::new(false),
                metrics,
            }),
        })
    }

    /// Where the limits are decided right now.
    pub(crate) fn state(&self) -> BackendState {
        self.shared.state()
    }
}

/// The breaker in front of Redis: opens on `failures_to_open` failures in a row (or half the
/// calls of the last 20 failing), stays open `open_for`, closes on one good `PING`. Its state
/// changes are the only log lines an outage writes.
fn breaker(config: &RedisConfig, metrics: &RedisMetrics) -> Result<Breaker, ConfigError> {
    let gauge = metrics.state.clone();
    let failing = match config.fail_mode {
        FailMode::Open => BackendState::FailingOpen,
        FailMode::Closed => BackendState::FailingClosed,
    };
    let share = config.local_share;
    Breaker::builder()
        .name("rate_limit_redis")
        .count_window(20)
        .minimum_calls(20)
        .failure_rate_threshold(0.5)
        .consecutive_failures(config.failures_to_open)
        .wait_in_open(config.open_for)
        .permitted_calls_in_half_open(1)
        .success_threshold(1)
        .automatic_transition(true)
        // The lines below say what an outage means for the limits; the breaker's own would
        // double them, and log every failed probe.
        .log_state_changes(false)
        .on_state_change(move |change| match change.to {
            State::Open | State::ForcedOpen if change.from != State::HalfOpen => {
                gauge.set(failing.gauge());
                if failing == BackendState::FailingClosed {
                    tracing::error!(
                        cause = ?change.cause,
                        "rate-limit Redis unreachable: refusing limited requests with 503 until it answers"
                    );
                } else {
                    tracing::warn!(
                        cause = ?change.cause,
                        local_share = share,
                        "rate-limit Redis unreachable: each replica limits on its own at its local share until it answers"
                    );
                }
            }
            State::Closed => {
                gauge.set(BackendState::Shared.gauge());
                tracing::info!("rate-limit Redis answers again: limits are shared again");
            }
            _ => {}
        })
        .build()
        .map_err(|e| e.within("redis"))
}

impl crate::backend::RateLimitBackend for RedisBackend {
    fn check(&self, checks: &[Check<'_>]) -> Pending {
        let shared = &self.shared;
        let lease_key = shared.leases.as_ref().map_or(0, |_| lease_key(checks));
        let wanted = match &shared.leases {
            Some(leases) => match leases.take(lease_key, Instant::now()) {
                Lease::Local(decision) => {
                    shared.metrics.lease_hit(decision.admitted());
                    return Pending::Ready(decision);
                }
                // A lease never exceeds a burst: it could never be granted whole.
                Lease::Ask(n) => checks
                    .iter()
                    .map(|c| c.policy().burst())
                    .fold(n, u32::min)
                    .max(1),
            },
            None => 1,
        };
        if shared.state() != BackendState::Shared {
            // Open (or probing): no call, no wait. A background probe finds out when Redis is
            // back.
            Arc::clone(shared).probe();
            return shared.without_redis(checks.iter().map(|c| (c.index(), c.key())));
        }
        let request = Request {
            pairs: checks
                .iter()
                .map(|c| (c.index(), c.key().clone()))
                .collect(),
            keys: checks
                .iter()
                .map(|c| shared.redis_key(c.index(), c.key()))
                .collect(),
            lease_key,
            wanted,
        };
        let shared = Arc::clone(shared);
        Pending::Later(Box::pin(async move { shared.ask(request).await }))
    }
}

impl Shared {
    fn state(&self) -> BackendState {
        match self.breaker.state() {
            State::Closed | State::Disabled | State::MetricsOnly => BackendState::Shared,
            _ => match self.config.fail_mode {
                FailMode::Open => BackendState::FailingOpen,
                FailMode::Closed => BackendState::FailingClosed,
            },
        }
    }

    fn redis_key(&self, policy: usize, key: &Key) -> String {
        // Hashed: API keys and user ids are secrets, and addresses personal data; whoever can
        // read Redis sees only digests. SHA-1 is stable across replicas and releases.
        let digest = sha1_smol::Sha1::from(key.to_bytes()).digest();
        format!(
            "{}:{}:{digest}",
            self.config.key_prefix, self.policies[policy].name
        )
    }

    fn connection(&self) -> redis::RedisResult<ConnectionManager> {
        if let Some(connection) = self.connection.get() {
            return Ok(connection.clone());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.config.connect_timeout))
            // Reconnection is retried in the background; requests never wait for it beyond
            // their deadline.
            .set_number_of_retries(2)
            .set_max_delay(self.config.open_for);
        let connection = ConnectionManager::new_lazy_with_config(self.client.clone(), config)?;
        Ok(self.connection.get_or_init(|| connection).clone())
    }

    /// One round trip: the script, under the deadline and the breaker.
    async fn ask(self: Arc<Self>, request: Request) -> Result<Decision, BoxError> {
        let Ok(permit) = self.breaker.try_acquire() else {
            return self.after_failure(&request);
        };
        let started = Instant::now();
        let call = async {
            let mut connection = self.connection()?;
            let mut invocation = SCRIPT.prepare_invoke();
            invocation.arg(request.wanted);
            for key in &request.keys {
                invocation.key(key);
            }
            for (policy, _) in &request.pairs {
                let policy = &self.policies[*policy];
                invocation
                    .arg(&policy.interval_us)
                    .arg(&policy.tolerance_us);
            }
            invocation.invoke_async::<Vec<i64>>(&mut connection).await
        };
        let result = tokio::time::timeout(self.config.deadline, call).await;
        let elapsed = started.elapsed();
        let failed = match result {
            Ok(Ok(reply)) => {
                if let Some((granted, decision)) = decode(&request, &reply) {
                    permit.success();
                    self.metrics.call(Call::Ok, elapsed);
                    self.remember(&request, granted, &decision);
                    return Ok(decision);
                }
                tracing::debug!(?reply, "rate-limit script gave an unexpected reply");
                Call::Error
            }
            Ok(Err(error)) => {
                tracing::debug!(%error, "rate-limit Redis call failed");
                Call::Error
            }
            Err(_) => {
                tracing::debug!(
                    deadline_ms = self.config.deadline.as_secs_f64() * 1000.0,
                    "rate-limit Redis call missed its deadline"
                );
                Call::Timeout
            }
        };
        permit.failure();
        self.metrics.call(failed, elapsed);
        self.after_failure(&request)
    }

    fn remember(&self, request: &Request, granted: u32, decision: &Decision) {
        let Some(leases) = &self.leases else {
            return;
        };
        let now = Instant::now();
        if granted >= request.wanted {
            leases.record_grant(request.lease_key, now, granted, decision);
            return;
        }
        // Refused, or admitted alone because a whole lease did not fit: the key is at its
        // limit. It is asked again once a whole lease could fit (at most the lease TTL later);
        // asking every interval would cost a round trip per request for exactly the keys that
        // are over their limit, and take their requests one at a time.
        let batch = |policy: usize| {
            self.policies[policy]
                .interval
                .saturating_mul(request.wanted.saturating_sub(1))
                .min(leases.ttl())
        };
        let refusal = Decision::from_states(decision.states().iter().zip(&request.pairs).map(
            |(state, (policy, _))| {
                if state.limited {
                    PolicyState::limited(
                        state.retry_after.saturating_add(batch(*policy)),
                        state.reset,
                    )
                } else if granted > 0 && state.remaining < u64::from(request.wanted) {
                    PolicyState::limited(batch(*policy), state.reset)
                } else {
                    *state
                }
            },
        ));
        let wait = refusal
            .states()
            .iter()
            .filter(|s| s.limited)
            .map(|s| s.retry_after)
            .max()
            .unwrap_or_default();
        leases.record_refusal(request.lease_key, now, &refusal, wait);
    }

    fn after_failure(&self, request: &Request) -> Result<Decision, BoxError> {
        match self.without_redis(request.pairs.iter().map(|(p, k)| (*p, k))) {
            Pending::Ready(decision) => Ok(decision),
            Pending::Later(_) | Pending::Unavailable(_) => {
                Err(Box::new(BackendUnavailable::new(self.config.open_for)))
            }
        }
    }

    /// The decision without Redis: the local share, or 503 when failing closed.
    fn without_redis<'k>(&self, pairs: impl Iterator<Item = (usize, &'k Key)>) -> Pending {
        self.metrics.fallbacks.increment(1);
        if self.config.fail_mode == FailMode::Closed {
            return Pending::Unavailable(self.config.open_for);
        }
        let mut hashed = [(0usize, 0u64); crate::backend::MAX_POLICIES_PER_RULE];
        let mut len = 0;
        for ((policy, key), slot) in pairs.zip(&mut hashed) {
            *slot = (policy, self.fallback.hash(key));
            len += 1;
        }
        let since = Instant::now().saturating_duration_since(self.epoch);
        let now = u64::try_from(since.as_nanos()).unwrap_or(u64::MAX);
        Pending::Ready(self.fallback.check(&hashed[..len], now))
    }

    /// Starts the background probe unless one runs: it waits out the open breaker, then
    /// `PING`s Redis under the deadline until the breaker closes. Requests never probe.
    fn probe(self: Arc<Self>) {
        if self.probing.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.probing.store(false, Ordering::Release);
            return;
        };
        let weak = Arc::downgrade(&self);
        drop(self);
        runtime.spawn(probe_until_closed(weak));
    }
}

async fn probe_until_closed(weak: Weak<Shared>) {
    loop {
        let Some(shared) = weak.upgrade() else {
            return;
        };
        if shared.breaker.state() == State::Closed {
            shared.probing.store(false, Ordering::Release);
            return;
        }
        let wait = match shared.breaker.try_acquire() {
            Ok(permit) => {
                let ping = async {
                    let mut connection = shared.connection()?;
                    redis::cmd("PING")
                        .query_async::<String>(&mut connection)
                        .await
                };
                match tokio::time::timeout(shared.config.deadline.max(PROBE_DEADLINE), ping).await {
                    Ok(Ok(_)) => permit.success(),
                    _ => permit.failure(),
                }
                Duration::ZERO
            }
            Err(rejected) => rejected.retry_in().max(Duration::from_millis(10)),
        };
        // Holding no strong reference while asleep: a dropped layer ends the probe.
        drop(shared);
        tokio::time::sleep(wait).await;
    }
}

/// The script's reply as a decision: `[granted, (limited, remaining, reset µs, retry µs)…]`.
fn decode(request: &Request, reply: &[i64]) -> Option<(u32, Decision)> {
    let (&granted, states) = reply.split_first()?;
    if states.len() != 4 * request.pairs.len() {
        return None;
    }
    let micros = |v: i64| Duration::from_micros(u64::try_from(v).unwrap_or(0));
    let decision = Decision::from_states(states.chunks_exact(4).map(|s| {
        if s[0] == 1 {
            PolicyState::limited(micros(s[3]), micros(s[2]))
        } else {
            PolicyState::admitted(u64::try_from(s[1]).unwrap_or(0), micros(s[2]))
        }
    }));
    Some((u32::try_from(granted).unwrap_or(0), decision))
}

/// A probe may take longer than a request's deadline: it waits for nobody, and a Redis that
/// answers in 20 ms is back, if slow.
const PROBE_DEADLINE: Duration = Duration::from_millis(100);

/// The lease-table key of a request: its policies and keys, hashed together.
fn lease_key(checks: &[Check<'_>]) -> u64 {
    use std::hash::{BuildHasher, Hash, Hasher};
    static SEED: OnceLock<foldhash::quality::RandomState> = OnceLock::new();
    let mut hasher = SEED.get_or_init(Default::default).build_hasher();
    for check in checks {
        check.index().hash(&mut hasher);
        check.key().hash(&mut hasher);
    }
    hasher.finish()
}
