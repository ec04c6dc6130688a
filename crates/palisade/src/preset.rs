//! Ready-made stacks.

use crate::{PalisadeConfig, Stack, StackBuilder};

/// The production preset: every layer on with its documented defaults (in-flight limit 1000,
/// shedding from 80% until back to 60%; connection limit 10 000; probes at `/health/*`; request
/// ids; the default security headers; 30 s request timeout, 2 MiB bodies; 10 s header timeout,
/// 75 s idle timeout; 5 s drain propagation delay, 20 s deadline). See [`PalisadeConfig`] for
/// every key.
///
/// ```
/// use axum::{Router, routing::get};
///
/// let stack = palisade::preset::production()
///     .overload_state(palisade::core::OverloadState::new())
///     .build()
///     .unwrap();
/// let app: Router = stack.apply(Router::new().route("/", get(|| async { "hello" })));
/// ```
pub fn production() -> StackBuilder {
    Stack::builder()
}

/// The production preset with every layer in observe-only mode: each decides, counts and logs
/// what it would reject, but serves everything (readiness reports overload as `warn` and stays
/// in rotation). The safe first deployment; switch layers to enforcing one at a time.
///
/// ```
/// let stack = palisade::preset::observe_only()
///     .overload_state(palisade::core::OverloadState::new())
///     .build()
///     .unwrap();
/// # let _ = stack;
/// ```
pub fn observe_only() -> StackBuilder {
    Stack::builder().config(PalisadeConfig::default().observe_only())
}
