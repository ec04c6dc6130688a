//! Ready-made stacks beside the default one. [`Stack::builder`] is the production stack: every
//! layer on with its documented defaults (see [`PalisadeConfig`]).

use crate::{PalisadeConfig, Stack, StackBuilder};

/// The default stack with every layer in observe-only mode: each decides, counts and logs
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
