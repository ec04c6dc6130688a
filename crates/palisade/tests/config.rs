//! `palisade.toml` and `PALISADE_*` overrides: defaults, file, precedence, and every kind of
//! error, each naming the key at fault.

use std::time::Duration;

use figment::Jail;
use palisade::{LoadError, PalisadeConfig, concurrency_limit::Watermark};

/// Runs `f` in a sandbox: a temporary working directory and an environment restored after.
#[allow(clippy::result_large_err)] // figment's `Jail` signature
fn jail(f: impl FnOnce(&mut Jail) -> Result<(), String>) {
    Jail::expect_with(|jail| f(jail).map_err(Into::into));
}

fn load_error(text: &str) -> String {
    PalisadeConfig::from_toml(text).unwrap_err().to_string()
}

#[test]
fn no_file_and_no_environment_gives_the_documented_defaults() {
    jail(|_| {
        let config = PalisadeConfig::load().map_err(|e| e.to_string())?;
        assert_eq!(config.server.addr, palisade::DEFAULT_ADDR);
        assert_eq!(config.server.header_read_timeout, Duration::from_secs(10));
        assert_eq!(config.server.idle_timeout, Duration::from_secs(75));
        assert_eq!(config.server.connections.max_connections, 10_000);
        assert_eq!(config.concurrency.max_in_flight, 1000);
        assert_eq!(config.concurrency.high_water, Watermark::Fraction(0.8));
        assert_eq!(config.timeout.timeout, Duration::from_secs(30));
        assert_eq!(
            config.server.drain.propagation_delay,
            Duration::from_secs(5)
        );
        assert!(config.layers.load_shed && config.layers.connection_limit);
        assert!(config.bulkheads.is_empty());
        Ok(())
    });
}

#[test]
fn palisade_toml_in_the_working_directory_is_read() {
    jail(|jail| {
        jail.create_file(
            "palisade.toml",
            r#"
            [server]
            addr = "0.0.0.0:9000"
            header_read_timeout = 2.5

            [concurrency]
            max_in_flight = 300
            high_water = 200
            low_water = 100

            [layers]
            load_shed = false

            [bulkheads.api]
            max_concurrent = 40
            max_wait = 0.25
            "#,
        )
        .map_err(|e| e.to_string())?;
        let config = PalisadeConfig::load().map_err(|e| e.to_string())?;
        assert_eq!(config.server.addr.to_string(), "0.0.0.0:9000");
        assert_eq!(
            config.server.header_read_timeout,
            Duration::from_millis(2500)
        );
        assert_eq!(config.concurrency.max_in_flight, 300);
        assert_eq!(config.concurrency.high_water, Watermark::Count(200));
        assert!(!config.layers.load_shed);
        assert_eq!(config.bulkheads["api"].max_concurrent, 40);
        assert_eq!(config.bulkheads["api"].max_wait, Duration::from_millis(250));
        Ok(())
    });
}

#[test]
fn environment_overrides_win_over_the_file() {
    jail(|jail| {
        jail.create_file(
            "custom.toml",
            "[concurrency]\nmax_in_flight = 300\n[server.connections]\nmax_connections = 50\n",
        )
        .map_err(|e| e.to_string())?;
        jail.set_env("PALISADE_CONFIG", "custom.toml");
        jail.set_env("PALISADE_CONCURRENCY__MAX_IN_FLIGHT", "500");
        jail.set_env("PALISADE_SERVER__CONNECTIONS__MAX_CONNECTIONS", "2000");
        jail.set_env("PALISADE_ADDR", "127.0.0.1:9999");
        jail.set_env("PALISADE_LAYERS__LOAD_SHED", "false");
        jail.set_env("PALISADE_CIRCUIT_BREAKERS__PAYMENTS__WAIT_IN_OPEN", "7");
        // Not a key (no `__`): ignored, like the example's own variables.
        jail.set_env("PALISADE_SOMETHING_ELSE", "whatever");
        let config = PalisadeConfig::load().map_err(|e| e.to_string())?;
        assert_eq!(config.concurrency.max_in_flight, 500);
        assert_eq!(config.server.connections.max_connections, 2000);
        assert_eq!(config.server.addr.to_string(), "127.0.0.1:9999");
        assert!(!config.layers.load_shed);
        assert_eq!(
            config.circuit_breakers["payments"].wait_in_open,
            Duration::from_secs(7)
        );
        Ok(())
    });
}

#[test]
fn a_missing_file_named_by_palisade_config_is_an_error() {
    jail(|jail| {
        jail.set_env("PALISADE_CONFIG", "nowhere.toml");
        let err = PalisadeConfig::load().unwrap_err().to_string();
        assert!(
            err.contains("PALISADE_CONFIG") && err.contains("nowhere.toml"),
            "{err}"
        );
        Ok(())
    });
}

#[test]
fn a_bad_environment_value_names_the_variable_and_key() {
    jail(|jail| {
        jail.set_env("PALISADE_CONCURRENCY__MAX_IN_FLIGHT", "lots");
        let err = PalisadeConfig::load().unwrap_err();
        assert!(matches!(err, LoadError::Parse(_)));
        let text = err.to_string();
        assert!(
            text.contains("PALISADE_CONCURRENCY__MAX_IN_FLIGHT"),
            "{text}"
        );
        assert!(text.contains("\"lots\""), "names the value: {text}");
        Ok(())
    });
}

#[test]
fn unknown_keys_are_errors() {
    let err = load_error("[concurrency]\nmax_inflight = 5\n");
    assert!(
        err.contains("max_inflight") && err.contains("concurrency"),
        "{err}"
    );
    let err = load_error("[concurency]\nmax_in_flight = 5\n");
    assert!(err.contains("concurency"), "{err}");
    let err = load_error("[server]\nheader_timeout = 5\n");
    assert!(err.contains("header_timeout"), "{err}");
    let err = load_error("[layers]\nloadshed = false\n");
    assert!(err.contains("loadshed"), "{err}");
}

#[test]
fn wrong_types_name_the_key() {
    let err = load_error("[server]\naddr = \"localhost\"\n");
    assert!(err.contains("server.addr"), "{err}");
    let err = load_error("[timeout]\ntimeout = \"30s\"\n");
    assert!(err.contains("timeout.timeout"), "{err}");
    let err = load_error("[timeout]\ntimeout = -1\n");
    assert!(err.contains("timeout.timeout"), "{err}");
}

#[test]
fn every_section_is_validated_with_its_key() {
    let cases = [
        (
            "[server]\nheader_read_timeout = 0\n",
            "server.header_read_timeout",
        ),
        ("[server]\nidle_timeout = 0\n", "server.idle_timeout"),
        (
            "[server]\nmax_header_bytes = 100\n",
            "server.max_header_bytes",
        ),
        ("[server]\nmax_headers = 0\n", "server.max_headers"),
        (
            "[server.connections]\nmax_connections = 0\n",
            "server.connections.max_connections",
        ),
        (
            "[server.drain]\ndeadline = 100000\n",
            "server.drain.deadline",
        ),
        (
            "[concurrency]\nhigh_water = 0.5\nlow_water = 0.7\n",
            "concurrency.low_water",
        ),
        (
            "[concurrency]\nmax_in_flight = 0\n",
            "concurrency.max_in_flight",
        ),
        ("[load_shed]\nthreshold = 2.0\n", "load_shed."),
        ("[request_id]\nmax_length = 0\n", "request_id.max_length"),
        (
            "[security_headers]\nremove = [\"content-length\"]\n",
            "security_headers.remove",
        ),
        ("[health]\nready_path = \"ready\"\n", "health.ready_path"),
        ("[timeout]\ntimeout = 0\n", "timeout.timeout"),
        ("[timeout]\nstatus = 200\n", "timeout.status"),
        (
            "[websocket]\nsend_buffer_low_water = 2000000\n",
            "websocket.send_buffer_low_water",
        ),
        (
            "[telemetry]\nmax_tracestate_len = 1\n",
            "telemetry.max_tracestate_len",
        ),
        ("[limits]\nmax_body_bytes = 0\n", "limits.max_body_bytes"),
        (
            "[bulkheads.api]\nmax_concurrent = 0\n",
            "bulkheads.api.max_concurrent",
        ),
        (
            "[circuit_breakers.db]\nfailure_rate_threshold = 1.5\n",
            "circuit_breakers.db.failure_rate_threshold",
        ),
    ];
    for (text, key) in cases {
        let err = PalisadeConfig::from_toml(text).unwrap_err();
        assert!(matches!(err, LoadError::Invalid(_)), "{text}: {err}");
        assert!(
            err.to_string().contains(key),
            "{text}: expected {key} in {err}"
        );
    }
}

#[test]
fn the_example_file_lists_valid_keys_with_their_defaults() {
    let text = include_str!("../../../palisade.example.toml");
    let example = PalisadeConfig::from_toml(text).unwrap();
    let defaults = PalisadeConfig::default();
    // Spot checks that the commented file tells the truth about the defaults.
    assert_eq!(example.server.addr, defaults.server.addr);
    assert_eq!(
        example.server.header_read_timeout,
        defaults.server.header_read_timeout
    );
    assert_eq!(
        example.concurrency.max_in_flight,
        defaults.concurrency.max_in_flight
    );
    assert_eq!(example.server.drain, defaults.server.drain);
    assert_eq!(example.server.tls, defaults.server.tls);
    assert_eq!(example.limits, defaults.limits);
    assert_eq!(example.timeout, defaults.timeout);
    assert_eq!(example.layers, defaults.layers);
    assert_eq!(example.request_id, defaults.request_id);
    assert_eq!(example.security_headers, defaults.security_headers);
    assert_eq!(example.telemetry, defaults.telemetry);
    assert_eq!(example.websocket, defaults.websocket);
    assert_eq!(example.request_guard, defaults.request_guard);
    assert_eq!(example.rate_limit, defaults.rate_limit);
    assert_eq!(example.overload, defaults.overload);
    assert!(example.clients.is_empty());
    // The commented client section, uncommented, is the defaults.
    let clients: String = text
        .lines()
        .skip_while(|line| !line.starts_with("# [clients.payments]"))
        .map(|line| line.strip_prefix("# ").unwrap_or(line))
        .collect::<Vec<_>>()
        .join("\n");
    let example = PalisadeConfig::from_toml(&clients).unwrap();
    let client = &example.clients["payments"];
    let default = palisade::ClientConfig::default();
    assert_eq!(client.attempt_timeout, default.attempt_timeout);
    let mut retry = default.retry.clone();
    retry.name = client.retry.name.clone();
    assert_eq!(client.retry, retry);
    let (breaker, expected) = (&client.circuit_breaker, &default.circuit_breaker);
    assert_eq!(breaker.wait_in_open, expected.wait_in_open);
    assert_eq!(breaker.consecutive_failures, expected.consecutive_failures);
    assert_eq!(breaker.minimum_calls, expected.minimum_calls);
}

#[test]
fn a_client_breaker_starts_from_the_client_defaults_in_the_file_too() {
    let server = palisade::circuit_breaker::CircuitBreakerConfig::default();
    let client = palisade::ClientConfig::default().circuit_breaker;
    assert_eq!(
        (client.consecutive_failures, client.minimum_calls),
        (0, 20),
        "a client decides on its failure rate alone"
    );
    assert_eq!((server.consecutive_failures, server.minimum_calls), (5, 5));
    let config = PalisadeConfig::from_toml(
        "[clients.a]\n\
         [clients.b.circuit_breaker]\nwait_in_open = 5\n\
         [clients.c.circuit_breaker]\nconsecutive_failures = 4\n\
         [clients.\"payments.eu\".circuit_breaker]\nwait_in_open = 5\n",
    )
    .unwrap();
    let breaker = |name: &str| {
        let b = &config.clients[name].circuit_breaker;
        (b.consecutive_failures, b.minimum_calls, b.wait_in_open)
    };
    assert_eq!(breaker("a"), (0, 20, Duration::from_secs(30)));
    assert_eq!(
        breaker("b"),
        (0, 20, Duration::from_secs(5)),
        "a table that sets other keys keeps the client defaults"
    );
    assert_eq!(
        breaker("c"),
        (4, 20, Duration::from_secs(30)),
        "a value in the file wins"
    );
    assert_eq!(
        breaker("payments.eu"),
        (0, 20, Duration::from_secs(5)),
        "a name with a dot in it too"
    );
    jail(|jail| {
        jail.set_env(
            "PALISADE_CLIENTS__D__CIRCUIT_BREAKER__CONSECUTIVE_FAILURES",
            "3",
        );
        jail.create_file("palisade.toml", "[clients.d]\n")
            .map_err(|e| e.to_string())?;
        let config = PalisadeConfig::load_from(Some(std::path::Path::new("palisade.toml")))
            .map_err(|e| e.to_string())?;
        assert_eq!(
            config.clients["d"].circuit_breaker.consecutive_failures, 3,
            "and so does the environment"
        );
        Ok(())
    });
}

#[test]
fn client_sections_are_validated_under_their_key() {
    let cases = [
        (
            "[clients.pay]\nattempt_timeout = 0",
            "clients.pay.attempt_timeout",
        ),
        (
            "[clients.pay.retry]\nattempt_timeout = 0.5",
            "clients.pay.retry.attempt_timeout",
        ),
        (
            "[clients.pay.retry]\nmax_attempts = 0",
            "clients.pay.retry.max_attempts",
        ),
        (
            "[clients.pay.retry.budget]\nratio = 11",
            "clients.pay.retry.budget.ratio",
        ),
        (
            "[clients.pay.circuit_breaker]\nfailure_rate_threshold = 2",
            "clients.pay.circuit_breaker.failure_rate_threshold",
        ),
        ("[clients.\"a b\"]", "clients.a b.name"),
        ("[clients.pay]\n[circuit_breakers.pay]", "clients.pay"),
    ];
    for (text, key) in cases {
        let err = PalisadeConfig::from_toml(text).unwrap_err();
        let LoadError::Invalid(err) = err else {
            panic!("{text}: {err}");
        };
        assert_eq!(err.key(), key, "{text}: {err}");
    }
    assert!(matches!(
        PalisadeConfig::from_toml("[clients.pay]\nattempt_timout = 1"),
        Err(LoadError::Parse(_))
    ));
}

#[test]
fn application_defaults_sit_under_the_file_and_the_environment() {
    let app_defaults =
        "[concurrency]\nmax_in_flight = 50\nretry_after = 2\n[timeout]\ntimeout = 9\n";
    jail(|jail| {
        jail.create_file("palisade.toml", "[concurrency]\nmax_in_flight = 70\n")
            .map_err(|e| e.to_string())?;
        jail.set_env("PALISADE_CONCURRENCY__RETRY_AFTER", "3");
        let config = PalisadeConfig::load_with_defaults(app_defaults).map_err(|e| e.to_string())?;
        assert_eq!(
            config.concurrency.max_in_flight, 70,
            "the file wins over the app"
        );
        assert_eq!(
            config.concurrency.retry_after,
            Duration::from_secs(3),
            "the env wins"
        );
        assert_eq!(
            config.timeout.timeout,
            Duration::from_secs(9),
            "the app's default stays"
        );
        assert_eq!(
            config.concurrency.low_water,
            Watermark::Fraction(0.6),
            "Palisade's too"
        );
        Ok(())
    });
}

#[test]
fn the_commented_redis_section_is_the_defaults() {
    let text = include_str!("../../../palisade.example.toml");
    let redis: Vec<&str> = text
        .lines()
        .skip_while(|line| !line.starts_with("# [rate_limit.redis]"))
        .take_while(|line| line.starts_with("# "))
        .map(|line| line.trim_start_matches("# "))
        .collect();
    assert!(redis.len() > 5, "the example documents [rate_limit.redis]");
    let toml = format!(
        "[rate_limit]\ndefault_policies = [\"p\"]\n[rate_limit.policies.p]\n{}",
        redis.join("\n")
    );
    let config = PalisadeConfig::from_toml(&toml).unwrap();
    assert_eq!(
        config.rate_limit.redis,
        Some(palisade::rate_limit::RedisConfig::new("redis://redis:6379"))
    );
}

#[test]
fn the_redis_url_alone_from_the_environment_shares_the_limits() {
    jail(|jail| {
        jail.create_file(
            "palisade.toml",
            "[rate_limit]\ndefault_policies = [\"per_ip\"]\n[rate_limit.policies.per_ip]\nrate = 20\n",
        )
        .map_err(|e| e.to_string())?;
        jail.set_env("PALISADE_RATE_LIMIT__REDIS__URL", "redis://10.0.0.5:6379/2");
        jail.set_env("PALISADE_RATE_LIMIT__REDIS__FAIL_MODE", "closed");
        let config = PalisadeConfig::load().map_err(|e| e.to_string())?;
        let redis = config.rate_limit.redis.expect("a redis section");
        assert_eq!(redis.url, "redis://10.0.0.5:6379/2");
        assert_eq!(redis.fail_mode, palisade::rate_limit::FailMode::Closed);
        assert_eq!(redis.deadline, Duration::from_millis(5));
        Ok(())
    });
}

#[test]
fn redis_settings_without_a_url_leave_the_limits_local() {
    // The Kubernetes manifest sets the local share and takes the URL from an optional secret.
    jail(|jail| {
        jail.create_file(
            "palisade.toml",
            "[rate_limit]\ndefault_policies = [\"per_ip\"]\n[rate_limit.policies.per_ip]\nrate = 20\n",
        )
        .map_err(|e| e.to_string())?;
        jail.set_env("PALISADE_RATE_LIMIT__REDIS__LOCAL_SHARE", "0.34");
        let config = PalisadeConfig::load().map_err(|e| e.to_string())?;
        assert!(config.rate_limit.shared_store().is_none());
        let stack = palisade::Stack::builder()
            .config(config)
            .overload_state(palisade::core::OverloadState::new())
            .build()
            .map_err(|e| e.to_string())?;
        let layer = stack.layers().rate_limit.clone().expect("the limit");
        assert_eq!(
            layer.backend_state(),
            palisade::rate_limit::BackendState::Local
        );
        Ok(())
    });
}
