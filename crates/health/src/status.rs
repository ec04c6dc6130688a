//! [`Status`] and [`CheckResult`]: what a check says and what a probe answers.

use std::{borrow::Cow, fmt, sync::Arc};

use http::StatusCode;

/// A health status as the IETF health-check draft (`application/health+json`) names it.
///
/// Ordered from best to worst, so `max` gives the worse of two statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    /// Healthy.
    Pass,
    /// Healthy, with a concern (a non-critical check failing, overload in observe-only mode).
    /// Probes answer `200`.
    Warn,
    /// Unhealthy. Probes answer `503`.
    Fail,
}

impl Status {
    /// `pass`, `warn` or `fail`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Warn => "warn",
            Self::Fail => "fail",
        }
    }

    /// The HTTP status a probe answers with: `200` for pass and warn, `503` for fail.
    pub const fn http_status(self) -> StatusCode {
        match self {
            Self::Pass | Self::Warn => StatusCode::OK,
            Self::Fail => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The value of the status gauges: 1 pass, 0.5 warn, 0 fail.
    pub const fn gauge_value(self) -> f64 {
        match self {
            Self::Pass => 1.0,
            Self::Warn => 0.5,
            Self::Fail => 0.0,
        }
    }

    pub(crate) const fn to_u8(self) -> u8 {
        match self {
            Self::Pass => 0,
            Self::Warn => 1,
            Self::Fail => 2,
        }
    }

    pub(crate) const fn from_u8(value: u8) -> Option<Self> {
        match value {
            0 => Some(Self::Pass),
            1 => Some(Self::Warn),
            2 => Some(Self::Fail),
            _ => None,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The result of one run of a check: a status and an optional human-readable output (the error
/// message of a failure; the draft says to omit it for `pass`).
///
/// Checks usually return `Result<T, E>` (`Ok` is pass, `Err(e)` is fail with `e.to_string()`) or a
/// `bool`; return a `CheckResult` for `warn` or a custom output. See [`IntoCheckResult`].
///
/// ```
/// use palisade_health::{CheckResult, Status};
///
/// assert_eq!(CheckResult::pass().status(), Status::Pass);
/// let slow = CheckResult::warn("replication lag 12 s");
/// assert_eq!(slow.output(), Some("replication lag 12 s"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    status: Status,
    output: Option<Arc<str>>,
}

impl CheckResult {
    /// Healthy.
    pub fn pass() -> Self {
        Self {
            status: Status::Pass,
            output: None,
        }
    }

    /// Healthy with a concern: reported as `warn`, never fails a probe.
    pub fn warn(output: impl Into<Cow<'static, str>>) -> Self {
        Self::with_output(Status::Warn, output)
    }

    /// Unhealthy, with the reason.
    pub fn fail(output: impl Into<Cow<'static, str>>) -> Self {
        Self::with_output(Status::Fail, output)
    }

    /// Any status with an output.
    pub fn with_output(status: Status, output: impl Into<Cow<'static, str>>) -> Self {
        let output: Cow<'static, str> = output.into();
        Self {
            status,
            output: (!output.is_empty()).then(|| Arc::from(output.as_ref())),
        }
    }

    /// The status.
    pub fn status(&self) -> Status {
        self.status
    }

    /// The output, if any.
    pub fn output(&self) -> Option<&str> {
        self.output.as_deref()
    }

    pub(crate) fn into_parts(self) -> (Status, Option<Arc<str>>) {
        (self.status, self.output)
    }
}

/// What a check may return: converted to a [`CheckResult`] after every run.
///
/// | returned | result |
/// |---|---|
/// | `CheckResult` | itself |
/// | `Ok(_)` | pass |
/// | `Err(e)` | fail, output `e.to_string()` |
/// | `true` / `false` | pass / fail |
/// | `Status` | that status, no output |
pub trait IntoCheckResult {
    /// The conversion.
    fn into_check_result(self) -> CheckResult;
}

impl IntoCheckResult for CheckResult {
    fn into_check_result(self) -> CheckResult {
        self
    }
}

impl<T, E: fmt::Display> IntoCheckResult for Result<T, E> {
    fn into_check_result(self) -> CheckResult {
        match self {
            Ok(_) => CheckResult::pass(),
            Err(err) => CheckResult::fail(err.to_string()),
        }
    }
}

impl IntoCheckResult for bool {
    fn into_check_result(self) -> CheckResult {
        if self {
            CheckResult::pass()
        } else {
            CheckResult::fail("check returned false")
        }
    }
}

impl IntoCheckResult for Status {
    fn into_check_result(self) -> CheckResult {
        CheckResult {
            status: self,
            output: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_order_from_best_to_worst() {
        assert!(Status::Pass < Status::Warn && Status::Warn < Status::Fail);
        assert_eq!(Status::Pass.max(Status::Fail), Status::Fail);
        assert_eq!(Status::Warn.http_status(), StatusCode::OK);
        assert_eq!(Status::Fail.http_status(), StatusCode::SERVICE_UNAVAILABLE);
        for status in [Status::Pass, Status::Warn, Status::Fail] {
            assert_eq!(Status::from_u8(status.to_u8()), Some(status));
        }
        assert_eq!(Status::from_u8(9), None);
        assert_eq!(Status::Warn.to_string(), "warn");
    }

    #[test]
    fn conversions() {
        assert_eq!(Ok::<(), &str>(()).into_check_result(), CheckResult::pass());
        let failed = Err::<(), _>("connection refused").into_check_result();
        assert_eq!(failed.status(), Status::Fail);
        assert_eq!(failed.output(), Some("connection refused"));
        assert_eq!(true.into_check_result().status(), Status::Pass);
        assert_eq!(false.into_check_result().status(), Status::Fail);
        assert_eq!(Status::Warn.into_check_result().output(), None);
        assert_eq!(CheckResult::fail("").output(), None, "empty output omitted");
    }
}
