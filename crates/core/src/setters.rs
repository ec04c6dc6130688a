//! [`enforcement_setters!`](crate::enforcement_setters) and
//! [`retry_after_setters!`](crate::retry_after_setters): the builder methods every admission
//! layer shares, written once so that `mode`, `observe_only`, `retry_after` and
//! `retry_after_jitter` mean the same thing on every builder.

/// Writes `mode` and `observe_only` for a builder whose configuration (at `self.config`, or the
/// path given first) has a `mode: EnforcementMode` field. The string says what the layer does in
/// observe-only mode. Use it inside the builder's `impl` block.
///
/// ```
/// use palisade_core::EnforcementMode;
///
/// #[derive(Default)]
/// struct Config {
///     mode: EnforcementMode,
/// }
/// #[derive(Default)]
/// struct Builder {
///     config: Config,
/// }
/// impl Builder {
///     palisade_core::enforcement_setters!("count what would be refused, serve everything.");
/// }
///
/// let builder = Builder::default().observe_only();
/// assert_eq!(builder.config.mode, EnforcementMode::ObserveOnly);
/// ```
#[macro_export]
macro_rules! enforcement_setters {
    ($observed:literal) => {
        $crate::enforcement_setters!(config, $observed);
    };
    ($($config:ident).+, $observed:literal) => {
        /// Enforce or only observe. Default enforce.
        pub fn mode(mut self, mode: $crate::EnforcementMode) -> Self {
            self.$($config).+.mode = mode;
            self
        }

        #[doc = concat!("Shorthand for `mode(EnforcementMode::ObserveOnly)`: ", $observed)]
        pub fn observe_only(self) -> Self {
            self.mode($crate::EnforcementMode::ObserveOnly)
        }
    };
}

/// Writes `retry_after` and `retry_after_jitter` for a builder whose `self.config` has
/// `retry_after` and `retry_after_jitter` (`Duration`) fields; the string is the documented
/// default of `retry_after`.
///
/// ```
/// use std::time::Duration;
///
/// #[derive(Default)]
/// struct Config {
///     retry_after: Duration,
///     retry_after_jitter: Duration,
/// }
/// #[derive(Default)]
/// struct Builder {
///     config: Config,
/// }
/// impl Builder {
///     palisade_core::retry_after_setters!("1 s");
/// }
///
/// let builder = Builder::default().retry_after(Duration::from_secs(2));
/// assert_eq!(builder.config.retry_after, Duration::from_secs(2));
/// ```
#[macro_export]
macro_rules! retry_after_setters {
    ($default:literal) => {
        #[doc = concat!("`Retry-After` of refusals. Default ", $default, ".")]
        pub fn retry_after(mut self, delay: ::std::time::Duration) -> Self {
            self.config.retry_after = delay;
            self
        }

        /// Random extra `Retry-After`, so refused clients do not return in lockstep. Default 0.
        pub fn retry_after_jitter(mut self, jitter: ::std::time::Duration) -> Self {
            self.config.retry_after_jitter = jitter;
            self
        }
    };
}
