//! The fields against a small strict parser of the Structured Fields subset they use (RFC 9651
//! List of Items whose bare item is a String and whose parameters are Integers).

use super::*;
use proptest::prelude::*;

/// One list member: the string and its integer parameters, in order.
type Item = (String, Vec<(String, i64)>);

/// Parses `sf-list` of `sf-string` items with integer parameters; `Err` on anything else.
fn parse_list(input: &str) -> Result<Vec<Item>, String> {
    let b = input.as_bytes();
    let mut i = 0;
    let mut items = Vec::new();
    let skip_sp = |i: &mut usize| {
        while *i < b.len() && b[*i] == b' ' {
            *i += 1;
        }
    };
    skip_sp(&mut i);
    if i == b.len() {
        return Ok(items);
    }
    loop {
        // sf-string
        if b.get(i) != Some(&b'"') {
            return Err(format!("expected string at {i}"));
        }
        i += 1;
        let mut s = String::new();
        loop {
            match b.get(i) {
                None => return Err("unterminated string".into()),
                Some(b'\\') => {
                    match b.get(i + 1) {
                        Some(&c @ (b'"' | b'\\')) => s.push(char::from(c)),
                        _ => return Err("bad escape".into()),
                    }
                    i += 2;
                }
                Some(b'"') => {
                    i += 1;
                    break;
                }
                Some(&c) if (0x20..0x7f).contains(&c) => {
                    s.push(char::from(c));
                    i += 1;
                }
                Some(_) => return Err("bad string char".into()),
            }
        }
        // parameters
        let mut params = Vec::new();
        while b.get(i) == Some(&b';') {
            i += 1;
            skip_sp(&mut i);
            let start = i;
            if !b
                .get(i)
                .is_some_and(|c| c.is_ascii_lowercase() || *c == b'*')
            {
                return Err("bad key".into());
            }
            while b.get(i).is_some_and(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || b"_-.*".contains(c)
            }) {
                i += 1;
            }
            let key = input[start..i].to_owned();
            if b.get(i) != Some(&b'=') {
                return Err("parameters here are never boolean".into());
            }
            i += 1;
            let start = i;
            if b.get(i) == Some(&b'-') {
                i += 1;
            }
            let digits = i;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if i == digits || i - digits > 15 {
                return Err("integer of 1 to 15 digits".into());
            }
            let value: i64 = input[start..i].parse().map_err(|e| format!("{e}"))?;
            if params.iter().any(|(k, _)| *k == key) {
                return Err("duplicate parameter".into());
            }
            params.push((key, value));
        }
        items.push((s, params));
        // OWS "," OWS
        skip_sp(&mut i);
        if i == b.len() {
            return Ok(items);
        }
        if b[i] != b',' {
            return Err(format!("expected ',' at {i}"));
        }
        i += 1;
        skip_sp(&mut i);
        if i == b.len() {
            return Err("trailing comma".into());
        }
    }
}

fn policy(name: &str, rate: u32, period: u64) -> Policy {
    Policy::new(name, rate, Duration::from_secs(period), rate)
}

#[test]
fn the_drafts_examples_parse_with_the_test_parser() {
    let items = parse_list(r#""burst";q=100;w=60,"daily";q=1000;w=86400"#).unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[1].1, vec![("q".into(), 1000), ("w".into(), 86400)]);
    assert!(parse_list(r#""a";q=1,"#).is_err());
    assert!(parse_list("a;q=1").is_err());
    assert!(parse_list(r#""a";q"#).is_err());
    assert!(parse_list(r#""a";q=1;q=2"#).is_err());
}

#[test]
fn policy_field_lists_every_policy() {
    let field = policy_field([&policy("per_ip", 60, 60), &policy("daily", 10_000, 86_400)]);
    assert_eq!(
        field.to_str().unwrap(),
        r#""per_ip";q=60;w=60, "daily";q=10000;w=86400"#
    );
}

#[test]
fn ratelimit_field_rounds_t_up() {
    let policies = [policy("per_ip", 60, 60), policy("daily", 10_000, 86_400)];
    let states = [
        PolicyState::admitted(42, Duration::from_millis(17_001)),
        PolicyState::admitted(9958, Duration::from_secs(3)),
    ];
    let field = ratelimit_field(&policies, &states);
    assert_eq!(
        field.to_str().unwrap(),
        r#""per_ip";r=42;t=18, "daily";r=9958;t=3"#
    );
}

#[test]
fn legacy_headers_report_the_most_restrictive_policy() {
    let policies = [policy("a", 60, 60), policy("b", 1000, 3600)];
    let states = [
        PolicyState::admitted(5, Duration::from_secs(10)),
        PolicyState::admitted(5, Duration::from_secs(100)),
    ];
    let mut headers = HeaderMap::new();
    Fields::new(&policies, &states, policy_field(&policies), true).apply(&mut headers);
    assert_eq!(headers[X_LIMIT], "1000");
    assert_eq!(headers[X_REMAINING], "5");
    assert_eq!(headers[X_RESET], "100");
    let mut headers = HeaderMap::new();
    Fields::new(&policies, &states, policy_field(&policies), false).apply(&mut headers);
    assert!(headers.get(X_LIMIT).is_none());
    assert!(headers.get(RATELIMIT).is_some());
}

proptest! {
    #[test]
    fn fields_parse_back(
        entries in proptest::collection::vec(
            ("[A-Za-z0-9_.-]{1,64}", 1u32..=u32::MAX, 1u64..=31_622_400, any::<u64>(), 0u64..=u64::from(u32::MAX)),
            1..=8,
        )
    ) {
        let policies: Vec<Policy> =
            entries.iter().map(|(n, rate, period, _, _)| policy(n, *rate, *period)).collect();
        let states: Vec<PolicyState> = entries
            .iter()
            .map(|(_, _, _, r, t_ms)| PolicyState::admitted(*r % 1_000_000_000_000_000, Duration::from_millis(*t_ms)))
            .collect();
        let parsed = parse_list(policy_field(&policies).to_str().unwrap()).unwrap();
        prop_assert_eq!(parsed.len(), entries.len());
        for ((name, params), (n, rate, period, _, _)) in parsed.iter().zip(&entries) {
            prop_assert_eq!(name, n);
            prop_assert_eq!(params, &vec![("q".to_owned(), i64::from(*rate)), ("w".to_owned(), i64::try_from(*period).unwrap())]);
        }
        let parsed = parse_list(ratelimit_field(&policies, &states).to_str().unwrap()).unwrap();
        for ((name, params), ((n, ..), state)) in parsed.iter().zip(entries.iter().zip(&states)) {
            prop_assert_eq!(name, n);
            prop_assert_eq!(params[0].0.as_str(), "r");
            prop_assert_eq!(params[0].1, i64::try_from(state.remaining).unwrap());
            prop_assert_eq!(params[1].1, i64::try_from(seconds_up(state.reset)).unwrap());
            prop_assert!(params[1].1 * 1000 >= i64::try_from(state.reset.as_millis()).unwrap());
        }
    }
}

#[test]
fn long_fields_spill_to_the_heap_intact() {
    let names: Vec<String> = (0..8).map(|i| format!("{i}{}", "x".repeat(63))).collect();
    let policies: Vec<Policy> = names.iter().map(|n| policy(n, 7, 60)).collect();
    let states = vec![PolicyState::admitted(u64::MAX, Duration::from_secs(1)); 8];
    let field = ratelimit_field(&policies, &states);
    let parsed = parse_list(field.to_str().unwrap());
    // u64::MAX has 20 digits, beyond Structured Fields integers: the field is still well formed
    // text, only the strict parser refuses the number.
    assert!(parsed.is_err());
    let text = field.to_str().unwrap();
    assert_eq!(text.matches("r=18446744073709551615;t=1").count(), 8);
    assert!(text.len() > 512);
    assert!(text.starts_with(&format!("\"{}\";r=", names[0])));
}
