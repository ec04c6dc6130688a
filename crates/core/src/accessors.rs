//! [`inner_service_accessors!`](crate::inner_service_accessors): the `get_ref`, `get_mut` and
//! `into_inner` methods every middleware service offers, written once (tower-http's
//! `define_inner_service_accessors!`).

/// Writes `get_ref`, `get_mut` and `into_inner` for a service whose wrapped service is the field
/// `inner`. Use it inside an `impl<S> Foo<S> { .. }` block.
///
/// ```
/// struct Wrap<S> {
///     inner: S,
/// }
///
/// impl<S> Wrap<S> {
///     palisade_core::inner_service_accessors!();
/// }
///
/// let mut wrap = Wrap { inner: 1 };
/// *wrap.get_mut() += 1;
/// assert_eq!(*wrap.get_ref(), 2);
/// assert_eq!(wrap.into_inner(), 2);
/// ```
#[macro_export]
macro_rules! inner_service_accessors {
    () => {
        /// The wrapped service.
        pub fn get_ref(&self) -> &S {
            &self.inner
        }

        /// The wrapped service, mutably.
        pub fn get_mut(&mut self) -> &mut S {
            &mut self.inner
        }

        /// Consumes this service, returning the wrapped one.
        pub fn into_inner(self) -> S {
            self.inner
        }
    };
}
