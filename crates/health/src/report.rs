//! [`HealthReport`]: a probe's answer, and its `application/health+json` form.

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use serde_json::Value;

use crate::Status;

/// The three Kubernetes probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Probe {
    /// Is the process able to answer at all? Failing it makes the kubelet restart the
    /// container, so it never looks at dependencies or overload.
    Liveness,
    /// Should the instance receive traffic? Failing it removes the pod from Service endpoints.
    Readiness,
    /// Has the application finished starting? Kubernetes holds the other probes until it passes.
    Startup,
}

impl Probe {
    /// The three probes.
    pub const ALL: [Probe; 3] = [Probe::Liveness, Probe::Readiness, Probe::Startup];

    /// `live`, `ready` or `startup`: the `probe` label of the metrics and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Liveness => "live",
            Self::Readiness => "ready",
            Self::Startup => "startup",
        }
    }

    pub(crate) const fn index(self) -> usize {
        match self {
            Self::Liveness => 0,
            Self::Readiness => 1,
            Self::Startup => 2,
        }
    }
}

/// One entry of a report's `checks`.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckReport {
    pub(crate) name: Arc<str>,
    pub(crate) status: Status,
    pub(crate) critical: bool,
    pub(crate) output: Option<Arc<str>>,
    pub(crate) time: Option<SystemTime>,
    pub(crate) duration: Option<Duration>,
    pub(crate) observed: Option<(f64, &'static str)>,
}

impl CheckReport {
    pub(crate) fn builtin(name: &'static str, status: Status, output: Option<String>) -> Self {
        Self {
            name: Arc::from(name),
            status,
            critical: true,
            output: output.map(Arc::from),
            time: None,
            duration: None,
            observed: None,
        }
    }

    /// The check's name (`lifecycle` and `overload` are the probes' own).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The status of its last result.
    pub fn status(&self) -> Status {
        self.status
    }

    /// Whether its failure fails the probe.
    pub fn is_critical(&self) -> bool {
        self.critical
    }

    /// Its output (error message), if any.
    pub fn output(&self) -> Option<&str> {
        self.output.as_deref()
    }

    /// When the result was observed (wall clock), for checks that run.
    pub fn time(&self) -> Option<SystemTime> {
        self.time
    }

    /// How long the run took, for checks that run.
    pub fn duration(&self) -> Option<Duration> {
        self.duration
    }

    /// A measurement and its unit (`overload`: utilisation in `percent`).
    pub fn observed(&self) -> Option<(f64, &'static str)> {
        self.observed
    }

    fn to_json(&self) -> String {
        let mut entry = Ordered::new();
        entry.field("status", self.status.as_str());
        if let Some(time) = self.time {
            entry.field("time", rfc3339(time));
        }
        if let Some((value, unit)) = self.observed {
            entry.field("observedValue", value);
            entry.field("observedUnit", unit);
        }
        // The draft: output SHOULD be omitted for `pass`.
        if self.status != Status::Pass
            && let Some(output) = &self.output
        {
            entry.field("output", output.as_ref());
        }
        format!("[{}]", entry.finish())
    }
}

/// A JSON object written in the order its fields are added (`status` first, as people read
/// it), without turning on `serde_json`'s order-preserving maps for the whole build.
struct Ordered(String);

impl Ordered {
    fn new() -> Self {
        Self(String::from("{"))
    }

    fn raw(&mut self, key: &str, json: &str) {
        if self.0.len() > 1 {
            self.0.push(',');
        }
        self.0.push_str(&Value::from(key).to_string());
        self.0.push(':');
        self.0.push_str(json);
    }

    fn field(&mut self, key: &str, value: impl Into<Value>) {
        self.raw(key, &value.into().to_string());
    }

    fn finish(mut self) -> String {
        self.0.push('}');
        self.0
    }
}

/// A probe's answer: an overall status and what it was made of.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthReport {
    pub(crate) probe: Probe,
    pub(crate) status: Status,
    pub(crate) checks: Vec<CheckReport>,
}

/// The draft's top-level service fields.
#[derive(Debug, Clone, Default)]
pub(crate) struct ServiceFields {
    pub(crate) service_id: Option<String>,
    pub(crate) version: Option<String>,
    pub(crate) release_id: Option<String>,
    pub(crate) description: Option<String>,
}

impl HealthReport {
    pub(crate) fn assemble(probe: Probe, checks: Vec<CheckReport>) -> Self {
        let status = checks
            .iter()
            .map(|c| {
                if c.critical {
                    c.status
                } else {
                    c.status.min(Status::Warn)
                }
            })
            .max()
            .unwrap_or(Status::Pass);
        Self {
            probe,
            status,
            checks,
        }
    }

    /// Which probe answered.
    pub fn probe(&self) -> Probe {
        self.probe
    }

    /// The overall status: the worst of the critical parts, and at most `warn` from the
    /// non-critical ones.
    pub fn status(&self) -> Status {
        self.status
    }

    /// The HTTP status: 200 for pass and warn, 503 for fail.
    pub fn http_status(&self) -> http::StatusCode {
        self.status.http_status()
    }

    /// The parts, in order: `lifecycle`, `overload`, then the checks as registered.
    pub fn checks(&self) -> &[CheckReport] {
        &self.checks
    }

    /// The part named `name`.
    pub fn check(&self, name: &str) -> Option<&CheckReport> {
        self.checks.iter().find(|c| c.name() == name)
    }

    /// What is wrong, in one line: the parts that are not `pass`, with their outputs.
    pub fn summary(&self) -> Option<String> {
        let parts: Vec<String> = self
            .checks
            .iter()
            .filter(|c| c.status != Status::Pass)
            .map(|c| match &c.output {
                Some(output) => format!("{}: {output}", c.name),
                None => format!("{}: {}", c.name, c.status),
            })
            .collect();
        (!parts.is_empty()).then(|| parts.join("; "))
    }

    /// The `application/health+json` body without details: `{"status":"pass"}`.
    pub fn status_body(&self) -> Bytes {
        Bytes::from_static(match self.status {
            Status::Pass => br#"{"status":"pass"}"#,
            Status::Warn => br#"{"status":"warn"}"#,
            Status::Fail => br#"{"status":"fail"}"#,
        })
    }

    /// The `application/health+json` body with details: `status`, `output` (what is wrong),
    /// and `checks` keyed by name, each an array of one object with `status`, `time`,
    /// `output` (not for pass) and, for `overload`, `observedValue`/`observedUnit`.
    pub fn detailed_body(&self) -> Bytes {
        self.detailed_json(&ServiceFields::default())
    }

    pub(crate) fn detailed_json(&self, service: &ServiceFields) -> Bytes {
        let mut doc = Ordered::new();
        doc.field("status", self.status.as_str());
        for (key, value) in [
            ("version", &service.version),
            ("releaseId", &service.release_id),
            ("serviceId", &service.service_id),
            ("description", &service.description),
        ] {
            if let Some(value) = value {
                doc.field(key, value.as_str());
            }
        }
        if let Some(summary) = self.summary() {
            doc.field("output", summary);
        }
        if !self.checks.is_empty() {
            let mut checks = Ordered::new();
            for check in &self.checks {
                checks.raw(&check.name, &check.to_json());
            }
            doc.raw("checks", &checks.finish());
        }
        Bytes::from(doc.finish())
    }
}

/// `time` as RFC 3339 UTC with milliseconds: `2026-11-22T10:15:30.123Z`.
pub(crate) fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_utc_with_millis() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20.123Z");
        // A leap day, and the end of a century year.
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000Z");
        let y2k = UNIX_EPOCH + Duration::from_secs(946_684_799);
        assert_eq!(rfc3339(y2k), "1999-12-31T23:59:59.000Z");
    }

    fn check(name: &str, status: Status, critical: bool) -> CheckReport {
        CheckReport {
            name: Arc::from(name),
            status,
            critical,
            output: (status != Status::Pass).then(|| Arc::from("broken")),
            time: Some(UNIX_EPOCH),
            duration: Some(Duration::from_millis(3)),
            observed: None,
        }
    }

    #[test]
    fn aggregation() {
        let r = |checks| HealthReport::assemble(Probe::Readiness, checks).status();
        assert_eq!(r(vec![]), Status::Pass);
        assert_eq!(r(vec![check("a", Status::Pass, true)]), Status::Pass);
        assert_eq!(r(vec![check("a", Status::Warn, true)]), Status::Warn);
        assert_eq!(r(vec![check("a", Status::Fail, false)]), Status::Warn);
        assert_eq!(
            r(vec![
                check("a", Status::Fail, false),
                check("b", Status::Fail, true)
            ]),
            Status::Fail
        );
    }

    #[test]
    fn bodies() {
        let report = HealthReport::assemble(
            Probe::Readiness,
            vec![
                CheckReport::builtin("lifecycle", Status::Pass, None),
                check("db", Status::Fail, false),
            ],
        );
        assert_eq!(report.status_body(), r#"{"status":"warn"}"#);
        let body = report.detailed_body();
        assert!(
            body.starts_with(br#"{"status":"warn","output":"db: broken","checks":{"lifecycle":"#),
            "status first, checks in order: {body:?}"
        );
        let doc: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(doc["status"], "warn");
        assert_eq!(doc["output"], "db: broken");
        assert_eq!(doc["checks"]["lifecycle"][0]["status"], "pass");
        assert!(doc["checks"]["lifecycle"][0].get("time").is_none());
        assert_eq!(doc["checks"]["db"][0]["status"], "fail");
        assert_eq!(doc["checks"]["db"][0]["output"], "broken");
        assert_eq!(doc["checks"]["db"][0]["time"], "1970-01-01T00:00:00.000Z");
        assert_eq!(
            report.check("db").unwrap().duration(),
            Some(Duration::from_millis(3))
        );
        let service = ServiceFields {
            version: Some("1".into()),
            service_id: Some("svc".into()),
            ..ServiceFields::default()
        };
        let doc: Value = serde_json::from_slice(&report.detailed_json(&service)).unwrap();
        assert_eq!(doc["version"], "1");
        assert_eq!(doc["serviceId"], "svc");
        assert!(doc.get("releaseId").is_none());
    }
}
