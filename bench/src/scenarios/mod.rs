//! The scenarios of `cargo xtask bench`. Add one by writing a module that implements
//! [`Scenario`] and listing it in [`all`].

use crate::scenario::Scenario;

mod baseline;
mod breaker;
mod bulkhead;
mod overload;
mod pressure;
mod priority;
mod ratelimit;
mod ratelimit_redis;
mod retry;
mod soak;
mod tls;
mod ws;

/// Every scenario, in the order `cargo xtask bench` lists them.
pub fn all() -> &'static [&'static dyn Scenario] {
    &[
        &baseline::Baseline,
        &overload::Overload,
        &priority::PriorityMix,
        &breaker::Breaker,
        &bulkhead::NoisyNeighbour,
        &ws::WsBroadcast,
        &ratelimit::RateLimitFlood,
        &ratelimit_redis::RateLimitRedis,
        &retry::RetryStorm,
        &pressure::Pressure,
        &tls::TlsHandshakes,
        &soak::Soak,
    ]
}

/// The scenario called `name`.
pub fn find(name: &str) -> Option<&'static dyn Scenario> {
    all().iter().copied().find(|s| s.name() == name)
}
