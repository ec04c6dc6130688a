//! What counts as a failure: [`Outcome`], the [`Classify`] trait, the default
//! [`HttpClassifier`], [`ResultClassifier`], and any closure.

use std::sync::Arc;

use http::{Response, StatusCode};

/// How a call counts for the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(rename_all = "snake_case")
)]
pub enum Outcome {
    /// The dependency did its job (a slow success still counts towards the slow-call rate).
    Success,
    /// The dependency failed.
    Failure,
    /// The call says nothing about the dependency (a cancelled request, a status the operator
    /// chose to ignore): not recorded at all, and a half-open probe slot it held is released.
    Ignore,
}

/// Decides the [`Outcome`] of a call from its result.
///
/// Implemented by [`HttpClassifier`] (the default of the layers), [`ResultClassifier`] (the
/// default of [`CircuitBreaker::call`](crate::Breaker::call)) and every
/// `Fn(&Result<Res, E>) -> Outcome` closure.
///
/// ```
/// use palisade_circuit_breaker::{Classify, Outcome};
///
/// // A Redis-like call where "not found" is an answer, not a failure.
/// #[derive(Debug)]
/// enum CacheError { NotFound, Io }
/// let classify = |r: &Result<String, CacheError>| match r {
///     Ok(_) | Err(CacheError::NotFound) => Outcome::Success,
///     Err(CacheError::Io) => Outcome::Failure,
/// };
/// assert_eq!(classify.classify(&Err(CacheError::NotFound)), Outcome::Success);
/// assert_eq!(classify.classify(&Err(CacheError::Io)), Outcome::Failure);
/// ```
pub trait Classify<Res, E> {
    /// The outcome of `result`.
    fn classify(&self, result: &Result<Res, E>) -> Outcome;
}

impl<F, Res, E> Classify<Res, E> for F
where
    F: Fn(&Result<Res, E>) -> Outcome,
{
    fn classify(&self, result: &Result<Res, E>) -> Outcome {
        self(result)
    }
}

/// `Ok` is a success, `Err` a failure.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResultClassifier;

impl<Res, E> Classify<Res, E> for ResultClassifier {
    fn classify(&self, result: &Result<Res, E>) -> Outcome {
        if result.is_ok() {
            Outcome::Success
        } else {
            Outcome::Failure
        }
    }
}

/// The HTTP classifier: 5xx responses and service errors (connection failures, timeouts) are
/// failures; everything else, 4xx included (the client's fault, not the dependency's), is a
/// success. Single statuses can be overridden, including to [`Outcome::Ignore`].
///
/// Copying a classifier without overrides is free; with overrides it is a reference count.
///
/// ```
/// use http::StatusCode;
/// use palisade_circuit_breaker::{HttpClassifier, Outcome};
///
/// let classifier = HttpClassifier::new()
///     // An upstream's rate limit says nothing about its health.
///     .status(StatusCode::TOO_MANY_REQUESTS, Outcome::Ignore)
///     // 501 is a permanent answer, not an outage.
///     .status(StatusCode::NOT_IMPLEMENTED, Outcome::Success);
/// assert_eq!(classifier.outcome_of(StatusCode::BAD_GATEWAY), Outcome::Failure);
/// assert_eq!(classifier.outcome_of(StatusCode::NOT_FOUND), Outcome::Success);
/// assert_eq!(classifier.outcome_of(StatusCode::TOO_MANY_REQUESTS), Outcome::Ignore);
/// ```
#[derive(Debug, Clone, Default)]
pub struct HttpClassifier {
    /// Sorted by status.
    overrides: Option<Arc<[(u16, Outcome)]>>,
    client_errors: Option<Outcome>,
    server_errors: Option<Outcome>,
    errors: Option<Outcome>,
}

impl HttpClassifier {
    /// The default rules: 5xx and errors fail, the rest succeed.
    pub fn new() -> Self {
        Self::default()
    }

    /// Classifies `status` as `outcome`, overriding the class rules.
    #[must_use]
    pub fn status(mut self, status: StatusCode, outcome: Outcome) -> Self {
        let mut list: Vec<(u16, Outcome)> = self.overrides.as_deref().unwrap_or(&[]).to_vec();
        list.retain(|(code, _)| *code != status.as_u16());
        list.push((status.as_u16(), outcome));
        list.sort_unstable_by_key(|(code, _)| *code);
        self.overrides = Some(list.into());
        self
    }

    /// The outcome of every 4xx status without an override. Default [`Outcome::Success`].
    #[must_use]
    pub fn client_errors(mut self, outcome: Outcome) -> Self {
        self.client_errors = Some(outcome);
        self
    }

    /// The outcome of every 5xx status without an override. Default [`Outcome::Failure`].
    #[must_use]
    pub fn server_errors(mut self, outcome: Outcome) -> Self {
        self.server_errors = Some(outcome);
        self
    }

    /// The outcome of a service error (no response at all). Default [`Outcome::Failure`].
    #[must_use]
    pub fn errors(mut self, outcome: Outcome) -> Self {
        self.errors = Some(outcome);
        self
    }

    /// The outcome of a response with `status`.
    #[inline]
    pub fn outcome_of(&self, status: StatusCode) -> Outcome {
        let code = status.as_u16();
        if let Some(list) = &self.overrides
            && let Ok(i) = list.binary_search_by_key(&code, |(c, _)| *c)
        {
            return list[i].1;
        }
        if status.is_server_error() {
            self.server_errors.unwrap_or(Outcome::Failure)
        } else if status.is_client_error() {
            self.client_errors.unwrap_or(Outcome::Success)
        } else {
            Outcome::Success
        }
    }

    /// The outcome of a service error.
    pub fn error_outcome(&self) -> Outcome {
        self.errors.unwrap_or(Outcome::Failure)
    }
}

impl<B, E> Classify<Response<B>, E> for HttpClassifier {
    #[inline]
    fn classify(&self, result: &Result<Response<B>, E>) -> Outcome {
        match result {
            Ok(response) => self.outcome_of(response.status()),
            Err(_) => self.error_outcome(),
        }
    }
}

#[cfg(all(test, not(palisade_loom)))]
mod tests {
    use super::*;

    #[allow(clippy::unnecessary_wraps)]
    fn response(status: u16) -> Result<Response<()>, &'static str> {
        let mut r = Response::new(());
        *r.status_mut() = StatusCode::from_u16(status).unwrap();
        Ok(r)
    }

    #[test]
    fn default_http_rules() {
        let c = HttpClassifier::new();
        for (status, outcome) in [
            (200, Outcome::Success),
            (204, Outcome::Success),
            (301, Outcome::Success),
            (400, Outcome::Success),
            (404, Outcome::Success),
            (429, Outcome::Success),
            (500, Outcome::Failure),
            (502, Outcome::Failure),
            (503, Outcome::Failure),
            (504, Outcome::Failure),
        ] {
            assert_eq!(c.classify(&response(status)), outcome, "{status}");
        }
        assert_eq!(
            c.classify(&Err::<Response<()>, _>("connection refused")),
            Outcome::Failure
        );
    }

    #[test]
    fn overrides_win_over_classes() {
        let c = HttpClassifier::new()
            .status(StatusCode::SERVICE_UNAVAILABLE, Outcome::Ignore)
            .status(StatusCode::NOT_FOUND, Outcome::Failure)
            .status(StatusCode::NOT_FOUND, Outcome::Ignore)
            .client_errors(Outcome::Failure)
            .errors(Outcome::Ignore);
        assert_eq!(c.classify(&response(503)), Outcome::Ignore);
        assert_eq!(c.classify(&response(404)), Outcome::Ignore, "last wins");
        assert_eq!(c.classify(&response(400)), Outcome::Failure);
        assert_eq!(c.classify(&response(500)), Outcome::Failure);
        assert_eq!(c.classify(&Err::<Response<()>, _>("x")), Outcome::Ignore);
        let c = HttpClassifier::new().server_errors(Outcome::Ignore);
        assert_eq!(c.classify(&response(500)), Outcome::Ignore);
    }

    #[test]
    fn results_and_closures() {
        assert_eq!(ResultClassifier.classify(&Ok::<_, ()>(1)), Outcome::Success);
        assert_eq!(
            ResultClassifier.classify(&Err::<(), _>(1)),
            Outcome::Failure
        );
        let odd_fails = |r: &Result<u32, ()>| match r {
            Ok(n) if n % 2 == 1 => Outcome::Failure,
            Ok(_) => Outcome::Success,
            Err(()) => Outcome::Ignore,
        };
        assert_eq!(odd_fails.classify(&Ok(3)), Outcome::Failure);
        assert_eq!(odd_fails.classify(&Err(())), Outcome::Ignore);
    }
}
