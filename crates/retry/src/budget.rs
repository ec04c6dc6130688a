//! [`RetryBudget`]: how many retries a client may add to its traffic, with exact accounting.

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use palisade_core::ConfigError;
use tokio::time::Instant;

use crate::config::{BudgetConfig, BudgetScope};

/// Micro-tokens per retry. Integers, not floats: a ratio of 0.1 deposits exactly 100 000 per
/// request, so 100 requests buy exactly 10 retries. tower's `TpsBudget` turns the ratio into a
/// whole number of requests per retry (`1 / 0.6` truncates to 1, allowing 100 % retries:
/// tower#857); here any ratio is exact to 10⁻⁶.
const SCALE: i64 = 1_000_000;

/// Buckets per window: a deposit expires between 0.9 and 1 window after it was made.
const BUCKETS: usize = 10;

/// A retry budget, shared by every clone of the layer, service or retrier that holds it.
///
/// Every call *deposits* `ratio` of a retry; every retry (and hedge) *withdraws* one, and is
/// refused when the balance would go below zero; a retry that succeeds is *refunded* (unless
/// `refund_successful_retries` is off), so the budget bounds the retries that fail. A floor of `min_per_second * window` retries is
/// always available so that a client with little traffic can still retry. Deposits and
/// withdrawals count for one `window` (in ten buckets), so the budget follows the recent request
/// rate and a burst of failures cannot spend credit earned long ago. With the defaults (20 %,
/// 10/s, 10 s) a client whose upstream fails every request adds at most 20 % of its request
/// rate plus 10 retries per second to the upstream's load, instead of multiplying it by the
/// number of attempts; one whose upstream fails a fifth of its attempts retries every one of
/// them, since four in five retries succeed and come back.
///
/// The state is a few integers behind one small mutex, held for a handful of instructions; a
/// lock-free version would need a compare-and-swap loop over a whole ring of buckets to stay
/// exact. `benches/budget.rs` measures it beside tower's `TpsBudget` (also a mutex and a clock
/// read per call): about the same alone, faster under contention.
///
/// ```
/// use palisade_retry::{BudgetConfig, RetryBudget};
///
/// let mut config = BudgetConfig::default();
/// config.ratio = 0.1;
/// config.min_per_second = 0.0;
/// let budget = RetryBudget::new(&config)?;
/// for _ in 0..100 {
///     budget.deposit(None);
/// }
/// let retries = (0..20).filter(|_| budget.try_withdraw(None)).count();
/// assert_eq!(retries, 10);
/// # Ok::<(), palisade_core::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct RetryBudget {
    inner: Arc<Inner>,
}

struct Inner {
    deposit: i64,
    reserve: i64,
    refunds: bool,
    bucket_nanos: u128,
    window: Duration,
    start: Instant,
    state: State,
}

enum State {
    Global(Mutex<Window>),
    PerHost(Mutex<Hosts>),
}

struct Hosts {
    map: HashMap<Box<str>, Window>,
    overflow: Window,
    max: usize,
}

/// A ring of buckets holding the net micro-tokens deposited (positive) and withdrawn
/// (negative) in each tenth of the window.
#[derive(Clone)]
struct Window {
    buckets: [i64; BUCKETS],
    /// The bucket epoch (time since the budget started, in bucket lengths) last written.
    epoch: u64,
    /// The epoch this window was created in: nothing before it is in its buckets.
    since: u64,
    total: i64,
}

/// A withdrawal, for its refund: the bucket it was taken from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Withdrawal {
    epoch: u64,
}

impl Window {
    const fn new(epoch: u64) -> Self {
        Self {
            buckets: [0; BUCKETS],
            epoch,
            since: epoch,
            total: 0,
        }
    }

    /// Expires the buckets that fell out of the window since `self.epoch`.
    fn advance(&mut self, epoch: u64) {
        if epoch <= self.epoch {
            return;
        }
        // At most one whole ring to clear, however long the window sat idle.
        let steps = (epoch - self.epoch).min(BUCKETS as u64);
        for step in 1..=steps {
            let i = slot(self.epoch + step);
            self.total -= self.buckets[i];
            self.buckets[i] = 0;
        }
        self.epoch = epoch;
    }

    fn add(&mut self, amount: i64) {
        self.buckets[slot(self.epoch)] += amount;
        self.total += amount;
    }

    /// Adds `amount` to the bucket of `epoch`, if that bucket is still in the window (and was
    /// this window's); otherwise what it would cancel has expired, and nothing changes.
    fn add_at(&mut self, epoch: u64, amount: i64) {
        if epoch >= self.since && epoch <= self.epoch && self.epoch - epoch < BUCKETS as u64 {
            self.buckets[slot(epoch)] += amount;
            self.total += amount;
        }
    }

    /// Whether every bucket is empty (expired, or deposits and withdrawals cancelled out): the
    /// window then counts exactly like a new one, so a per-host map can drop it without losing
    /// anything. Call after [`Window::advance`].
    fn is_idle(&self) -> bool {
        self.buckets == [0; BUCKETS]
    }
}

#[allow(clippy::cast_possible_truncation)] // the remainder is below BUCKETS
fn slot(epoch: u64) -> usize {
    (epoch % BUCKETS as u64) as usize
}

/// Rounds `x` (non-negative, validated) to micro-tokens.
#[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)] // at most 6e13 for the validated ranges
fn micro(x: f64) -> i64 {
    (x * SCALE as f64).round() as i64
}

impl RetryBudget {
    /// A budget with `config`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when the configuration is invalid (see [`BudgetConfig::validate`]).
    pub fn new(config: &BudgetConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let window = config.window;
        let state = match config.scope {
            BudgetScope::Global => State::Global(Mutex::new(Window::new(0))),
            BudgetScope::PerHost => State::PerHost(Mutex::new(Hosts {
                map: HashMap::new(),
                overflow: Window::new(0),
                max: config.max_hosts,
            })),
        };
        Ok(Self {
            inner: Arc::new(Inner {
                deposit: micro(config.ratio),
                reserve: micro(config.min_per_second * window.as_secs_f64()),
                refunds: config.refund_successful_retries,
                bucket_nanos: (window.as_nanos() / BUCKETS as u128).max(1),
                window,
                start: Instant::now(),
                state,
            }),
        })
    }

    /// Records a call (to `host`, for a per-host budget; ignored by a global one): adds `ratio`
    /// of a retry. Returns the balance afterwards, in retries.
    pub fn deposit(&self, host: Option<&str>) -> f64 {
        let amount = self.inner.deposit;
        to_tokens(
            self.with_window(host, |w| {
                w.add(amount);
                w.total
            }) + self.inner.reserve,
        )
    }

    /// Takes one retry from the budget (of `host`, for a per-host budget), if the balance
    /// allows it.
    pub fn try_withdraw(&self, host: Option<&str>) -> bool {
        self.withdraw(host).is_some()
    }

    /// Takes one retry; the balance afterwards and the withdrawal (for its refund), or `None`
    /// when refused.
    pub(crate) fn withdraw(&self, host: Option<&str>) -> Option<(f64, Withdrawal)> {
        let reserve = self.inner.reserve;
        self.with_window(host, |w| {
            (reserve + w.total >= SCALE).then(|| {
                w.add(-SCALE);
                (to_tokens(reserve + w.total), Withdrawal { epoch: w.epoch })
            })
        })
    }

    /// Gives back `withdrawal`, the retry of a retry that succeeded (of `host`, for a per-host
    /// budget), unless the budget was configured without refunds: into the bucket it was taken
    /// from, so a refund cancels its withdrawal exactly and never outlives it as extra credit.
    /// Returns the balance afterwards, in retries.
    pub(crate) fn refund(&self, host: Option<&str>, withdrawal: Withdrawal) -> f64 {
        if !self.inner.refunds {
            return self.balance(host);
        }
        to_tokens(
            self.with_window(host, |w| {
                w.add_at(withdrawal.epoch, SCALE);
                w.total
            }) + self.inner.reserve,
        )
    }

    /// The retries available now (of `host`, for a per-host budget).
    pub fn balance(&self, host: Option<&str>) -> f64 {
        to_tokens(self.with_window(host, |w| w.total) + self.inner.reserve)
    }

    /// Whether the budget is kept per host.
    pub fn is_per_host(&self) -> bool {
        matches!(self.inner.state, State::PerHost(_))
    }

    /// The number of hosts with a budget of their own (0 for a global budget).
    pub fn hosts(&self) -> usize {
        match &self.inner.state {
            State::Global(_) => 0,
            State::PerHost(hosts) => lock(hosts).map.len(),
        }
    }

    fn epoch(&self) -> u64 {
        let nanos = Instant::now()
            .saturating_duration_since(self.inner.start)
            .as_nanos();
        u64::try_from(nanos / self.inner.bucket_nanos).unwrap_or(u64::MAX)
    }

    fn with_window<R>(&self, host: Option<&str>, f: impl FnOnce(&mut Window) -> R) -> R {
        let epoch = self.epoch();
        match &self.inner.state {
            State::Global(window) => {
                let mut window = lock(window);
                window.advance(epoch);
                f(&mut window)
            }
            State::PerHost(hosts) => {
                let mut hosts = lock(hosts);
                let window = hosts.window(host, epoch);
                window.advance(epoch);
                f(window)
            }
        }
    }
}

impl Hosts {
    /// The window of `host`: its own, a new one if there is room (evicting an idle host if
    /// need be), or the shared overflow window.
    fn window(&mut self, host: Option<&str>, epoch: u64) -> &mut Window {
        let Some(host) = host else {
            return &mut self.overflow;
        };
        if !self.map.contains_key(host) {
            if self.map.len() >= self.max {
                // An idle window equals a fresh one: evicting it loses nothing.
                let idle = self.map.iter_mut().find_map(|(k, w)| {
                    w.advance(epoch);
                    w.is_idle().then(|| k.clone())
                });
                match idle {
                    Some(key) => {
                        self.map.remove(&key);
                    }
                    None => return &mut self.overflow,
                }
            }
            self.map.insert(host.into(), Window::new(epoch));
        }
        self.map.get_mut(host).expect("inserted above")
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The critical sections cannot panic halfway (integer adds on validated ranges), so a
    // poisoned lock still holds consistent numbers.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[allow(clippy::cast_precision_loss)] // a gauge value
fn to_tokens(micro: i64) -> f64 {
    micro as f64 / SCALE as f64
}

impl fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("RetryBudget");
        s.field("ratio", &to_tokens(self.inner.deposit))
            .field("reserve", &to_tokens(self.inner.reserve))
            .field("window", &self.inner.window);
        if self.is_per_host() {
            s.field("hosts", &self.hosts());
        } else {
            s.field("balance", &self.balance(None));
        }
        s.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(ratio: f64, min_per_second: f64) -> RetryBudget {
        let config = BudgetConfig {
            ratio,
            min_per_second,
            ..BudgetConfig::default()
        };
        RetryBudget::new(&config).unwrap()
    }

    fn retries_after(budget: &RetryBudget, requests: usize) -> usize {
        for _ in 0..requests {
            budget.deposit(None);
        }
        (0..100_000)
            .take_while(|_| budget.try_withdraw(None))
            .count()
    }

    /// tower#857: tower's `TpsBudget` truncates `1 / ratio`, so 0.6 allows 100 % retries and
    /// 0.3 allows 50 %. Here every ratio is exact.
    #[tokio::test(start_paused = true)]
    async fn fractional_ratios_are_exact() {
        for (ratio, requests, expected) in [
            (0.1, 100, 10),
            (0.2, 100, 20),
            (0.3, 100, 30),
            (0.6, 100, 60),
            (0.25, 7, 1),
            (0.001, 1000, 1),
            (0.7, 10, 7),
            (1.5, 10, 15),
            (10.0, 3, 30),
            (0.0, 1000, 0),
        ] {
            assert_eq!(
                retries_after(&budget(ratio, 0.0), requests),
                expected,
                "ratio {ratio}, {requests} requests"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn deposits_accumulate_across_buckets_until_they_expire() {
        let b = budget(0.5, 0.0);
        for _ in 0..10 {
            b.deposit(None);
            tokio::time::advance(Duration::from_millis(500)).await;
        }
        // 5 s of deposits, all inside the 10 s window.
        assert!((b.balance(None) - 5.0).abs() < 1e-9);
        tokio::time::advance(Duration::from_secs(6)).await;
        // The first deposits have expired; the later ones have not.
        let left = b.balance(None);
        assert!(left > 0.0 && left < 5.0, "{left}");
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(b.balance(None).abs() < 1e-9);
    }

    #[tokio::test(start_paused = true)]
    async fn the_floor_refills_over_the_window() {
        let b = budget(0.0, 1.0);
        // 1 retry per second over 10 s: 10 retries, then none.
        assert_eq!(retries_after(&b, 0), 10);
        assert!(!b.try_withdraw(None));
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(
            !b.try_withdraw(None),
            "withdrawals count for the whole window"
        );
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(
            retries_after(&b, 0),
            10,
            "spent floor is back after one window"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn fractional_floor() {
        let b = budget(0.0, 0.25);
        assert_eq!(
            retries_after(&b, 0),
            2,
            "0.25/s over 10 s: 2.5 retries, 2 whole ones"
        );
        let b = budget(0.05, 0.25);
        assert_eq!(
            retries_after(&b, 10),
            3,
            "2.5 from the floor + 0.5 from deposits"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_refund_cancels_its_withdrawal_and_never_outlives_it() {
        let b = budget(0.0, 1.0); // a floor of 10 retries over the 10 s window
        let (_, withdrawal) = b.withdraw(None).unwrap();
        assert!((b.balance(None) - 9.0).abs() < 1e-9);
        b.refund(None, withdrawal);
        assert!((b.balance(None) - 10.0).abs() < 1e-9, "cancelled exactly");

        // A retry that outlives the window: its withdrawal has expired, so has its refund.
        let (_, withdrawal) = b.withdraw(None).unwrap();
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(
            (b.balance(None) - 10.0).abs() < 1e-9,
            "the withdrawal expired"
        );
        b.refund(None, withdrawal);
        assert!(
            (b.balance(None) - 10.0).abs() < 1e-9,
            "no credit beyond the floor: {}",
            b.balance(None)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn per_host_budgets_are_separate_and_bounded() {
        let config = BudgetConfig {
            ratio: 0.5,
            min_per_second: 0.0,
            scope: BudgetScope::PerHost,
            max_hosts: 2,
            ..BudgetConfig::default()
        };
        let b = RetryBudget::new(&config).unwrap();
        for _ in 0..5 {
            b.deposit(Some("a:80"));
        }
        assert!(!b.try_withdraw(Some("b:80")), "b earned nothing");
        assert!(b.try_withdraw(Some("a:80")));
        assert!(b.try_withdraw(Some("a:80")));
        assert!(!b.try_withdraw(Some("a:80")), "half a retry left");
        b.deposit(Some("b:80"));
        b.deposit(Some("c:80"));
        b.deposit(Some("c:80"));
        assert_eq!(b.hosts(), 2, "c shares the overflow budget");
        assert!(b.try_withdraw(Some("c:80")));
        assert!(
            !b.try_withdraw(None),
            "no host: the overflow budget, which c spent"
        );
        // Once a host's window has expired its slot can be reused.
        tokio::time::advance(Duration::from_secs(11)).await;
        b.deposit(Some("d:80"));
        assert_eq!(b.hosts(), 2);
        b.deposit(Some("d:80"));
        assert!(b.try_withdraw(Some("d:80")), "d has its own budget");
        assert!(!b.try_withdraw(Some("d:80")));
    }

    #[tokio::test(start_paused = true)]
    async fn clones_share_one_budget() {
        let b = budget(0.0, 0.1);
        let c = b.clone();
        assert!(b.try_withdraw(None));
        assert!(!c.try_withdraw(None));
        assert!(format!("{c:?}").contains("balance"));
    }

    /// Many threads depositing and withdrawing at once: never more retries than earned.
    #[test]
    fn concurrent_use_stays_exact() {
        let b = budget(0.2, 0.0);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || {
                    let mut retries = 0u32;
                    for _ in 0..10_000 {
                        b.deposit(None);
                        retries += u32::from(b.try_withdraw(None));
                    }
                    retries
                })
            })
            .collect();
        let retries: u32 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        // 40 000 deposits of 0.2 in well under a window: 8 000 retries, less at most the one
        // whole retry each thread could have left unclaimed at its end.
        let left = b.balance(None);
        assert!(retries <= 8_000, "{retries}");
        assert!(
            (f64::from(retries) + left - 8_000.0).abs() < 1e-6,
            "{retries} + {left}"
        );
    }
}
