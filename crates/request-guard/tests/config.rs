//! Configuration: validation through the public constructors, and a `[request_guard]` TOML
//! section read with serde (with the `serde` feature).

use palisade_request_guard::{RequestGuardConfig, RequestGuardLayer};

#[test]
fn bad_configuration_is_an_error_not_a_panic() {
    let err = RequestGuardLayer::builder()
        .max_uri_length(100)
        .max_query_length(200)
        .build()
        .unwrap_err();
    assert_eq!(err.key(), "max_query_length");
    let err = RequestGuardLayer::builder()
        .allowed_methods(Vec::<String>::new())
        .build()
        .unwrap_err();
    assert_eq!(err.key(), "allowed_methods");
    let err = RequestGuardLayer::from_config({
        let mut config = RequestGuardConfig::default();
        config.max_uri_length = 1 << 20;
        config
    })
    .unwrap_err();
    assert_eq!(
        err.within("request_guard").key(),
        "request_guard.max_uri_length"
    );
    assert_eq!(
        RequestGuardLayer::new().config(),
        &RequestGuardConfig::default()
    );
}

#[cfg(feature = "serde")]
mod serde {
    use palisade_core::EnforcementMode;
    use palisade_request_guard::{Action, DenyPattern, DoubleSlash, RequestGuardConfig};

    #[derive(serde::Deserialize)]
    struct File {
        request_guard: RequestGuardConfig,
    }

    #[test]
    fn a_toml_section_reads_into_the_config() {
        let file: File = toml::from_str(
            r#"
            [request_guard]
            mode = "observe_only"
            double_slashes = "redirect"
            path_parameters = "reject"
            encoded_slashes = "allow"
            max_uri_length = 4096
            max_query_length = 1024
            allowed_methods = ["GET", "HEAD", "PROPFIND"]
            deny = [{ prefix = "/.git" }, { segment = ".env" }, { contains = "wp-admin" }]
            "#,
        )
        .unwrap();
        let config = file.request_guard;
        assert_eq!(config.mode, EnforcementMode::ObserveOnly);
        assert_eq!(config.double_slashes, DoubleSlash::Redirect);
        assert_eq!(config.path_parameters, Action::Reject);
        assert_eq!(config.encoded_slashes, Action::Allow);
        assert_eq!(config.dot_segments, Action::Reject);
        assert_eq!(config.max_uri_length, 4096);
        assert_eq!(config.allowed_methods.len(), 3);
        assert_eq!(config.deny[1], DenyPattern::segment(".env"));
        config.validate().unwrap();
    }

    #[test]
    fn an_empty_section_is_the_defaults_and_unknown_keys_are_errors() {
        let file: File = toml::from_str("[request_guard]\n").unwrap();
        assert_eq!(file.request_guard, RequestGuardConfig::default());
        let err = toml::from_str::<File>("[request_guard]\nmax_url_length = 1\n").err();
        assert!(err.is_some_and(|e| e.to_string().contains("max_url_length")));
    }
}
