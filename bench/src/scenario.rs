//! What a load scenario is: the servers it compares and how it drives them.
//!
//! A scenario lives in its own module under `scenarios/` and is listed once in
//! [`crate::scenarios::all`]. The same binary plays both roles: `palisade-bench <scenario>` runs
//! the load, and `bench-server <scenario> <system>` serves one system under test, so a scenario's
//! servers and its load are written side by side.

use std::{collections::BTreeMap, future::Future, pin::Pin, time::Duration};

use axum::Router;

use crate::report::Row;

/// How long each load point runs.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Measured time.
    pub duration: Duration,
    /// Time before measuring.
    pub warmup: Duration,
    /// Time after the schedule for outstanding requests.
    pub grace: Duration,
    /// Rounds per system, where a scenario alternates systems and keeps the median.
    pub rounds: usize,
    /// How long to run, when the command line says (`--duration 24h`): for scenarios that run
    /// for a length of time rather than at load points (the soak).
    pub length: Option<Duration>,
}

/// `90s`, `30m`, `24h` (or plain seconds) as a duration.
///
/// # Errors
///
/// Anything else.
pub fn parse_length(text: &str) -> Result<Duration, String> {
    let (number, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => text.split_at(i),
        None => (text, "s"),
    };
    let seconds: u64 = match (number.parse::<u64>(), unit) {
        (Ok(n), "s") => n,
        (Ok(n), "m") => n.saturating_mul(60),
        (Ok(n), "h") => n.saturating_mul(3600),
        _ => {
            return Err(format!(
                "{text:?} is not a duration such as 90s, 30m or 24h"
            ));
        }
    };
    if seconds == 0 {
        return Err(format!("{text:?}: a duration must be above zero"));
    }
    Ok(Duration::from_secs(seconds))
}

impl Timing {
    /// `--quick`: a smoke test of the harness, each scenario well under a minute.
    pub const QUICK: Timing = Timing {
        duration: Duration::from_secs(2),
        warmup: Duration::from_millis(500),
        grace: Duration::from_millis(500),
        rounds: 1,
        length: None,
    };

    /// A measurement.
    pub const FULL: Timing = Timing {
        duration: Duration::from_secs(10),
        warmup: Duration::from_secs(2),
        grace: Duration::from_secs(3),
        rounds: 3,
        length: None,
    };
}

/// `--key value` options passed to a server under test.
#[derive(Debug, Clone, Default)]
pub struct ServerArgs(BTreeMap<String, String>);

impl ServerArgs {
    /// Parses `--key value` pairs.
    ///
    /// # Errors
    ///
    /// A flag without a value, or a value without a flag.
    pub fn parse(mut args: impl Iterator<Item = String>) -> Result<Self, String> {
        let mut map = BTreeMap::new();
        while let Some(flag) = args.next() {
            let key = flag
                .strip_prefix("--")
                .ok_or_else(|| format!("expected --option, got {flag:?}"))?;
            let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
            map.insert(key.to_owned(), value);
        }
        Ok(Self(map))
    }

    /// Adds `--key value`.
    #[must_use]
    pub fn with(mut self, key: &str, value: &impl ToString) -> Self {
        self.0.insert(key.to_owned(), value.to_string());
        self
    }

    /// The options as command-line arguments.
    pub fn to_args(&self) -> Vec<String> {
        self.0
            .iter()
            .flat_map(|(k, v)| [format!("--{k}"), v.clone()])
            .collect()
    }

    /// A numeric option, or `default`.
    ///
    /// # Errors
    ///
    /// When the value is not a number.
    pub fn number(&self, key: &str, default: u64) -> Result<u64, String> {
        self.0.get(key).map_or(Ok(default), |v| {
            v.parse()
                .map_err(|_| format!("--{key}: {v:?} is not a number"))
        })
    }

    /// A text option, if given.
    pub fn text(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
}

/// A server under test.
#[derive(Debug)]
pub enum App {
    /// An axum application, served by `axum::serve` with `ConnectInfo<SocketAddr>`.
    Axum(Router),
    /// The same with `TCP_NODELAY` on every connection (as the bare hyper server sets it): for
    /// streams of small writes such as WebSocket messages, which Nagle's algorithm would hold
    /// back until the client's delayed ACK.
    AxumNoDelay(Router),
    /// hyper with a `service_fn` and no router (see [`crate::servers::serve`]).
    BareHyper(crate::servers::Work),
    /// An axum application served by `palisade::serve` with these settings (connection limit,
    /// client timeouts, drain).
    Palisade(Router, Box<palisade::Server>),
    /// [`App::Palisade`] with `TCP_NODELAY` on every connection, as `Stack::bind` gives.
    PalisadeNoDelay(Router, Box<palisade::Server>),
    /// An axum application served over TLS by axum-server's rustls listener, from these PEM
    /// files (certificate chain, key), with `TCP_NODELAY` (its `NoDelayAcceptor`): the peer of
    /// `palisade::serve` with `[server.tls]`.
    AxumServerTls(Router, std::path::PathBuf, std::path::PathBuf),
}

/// A boxed future, as trait objects cannot have async methods.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A load scenario.
pub trait Scenario: Sync {
    /// The command-line name (`overload`).
    fn name(&self) -> &'static str;

    /// The chart title.
    fn title(&self) -> &'static str;

    /// The server of `system` (run inside `bench-server`).
    ///
    /// # Errors
    ///
    /// An unknown system or invalid options.
    fn server(&self, system: &str, args: &ServerArgs) -> Result<App, String>;

    /// Runs the scenario: starts its servers with [`crate::process::ServerProcess`], drives them
    /// with [`crate::load`], and returns the rows to report.
    fn run(&'static self, timing: Timing) -> BoxFuture<'static, Result<Vec<Row>, String>>;
}
