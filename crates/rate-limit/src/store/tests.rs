//! The store on explicit clocks: admission and refill, several policies at once (a refusal
//! spends nothing), rollback, and the key cap under a flood of distinct keys.

use std::hash::RandomState;

use super::*;

const SEC: u64 = 1_000_000_000;

fn store(policies: &[(u32, u64, u32)], max_keys: usize) -> LocalStore {
    LocalStore::new(
        policies
            .iter()
            .map(|&(rate, period, burst)| {
                PolicyStore::new(
                    Gcra::new(rate, Duration::from_secs(period), burst),
                    max_keys,
                    StoreMetrics::noop(),
                )
            })
            .collect(),
    )
}

fn admitted(store: &LocalStore, pairs: &[(usize, u64)], now: u64) -> bool {
    store.check(pairs, now).admitted()
}

#[test]
fn exact_admission_over_a_window() {
    // 5 per 10 s, burst 5: 5 at once, then one every 2 s, and exactly 5 per window after that.
    let s = store(&[(5, 10, 5)], 100);
    let now = 100 * SEC;
    for _ in 0..5 {
        assert!(admitted(&s, &[(0, 1)], now));
    }
    assert!(!admitted(&s, &[(0, 1)], now));
    assert!(!admitted(&s, &[(0, 1)], now + 2 * SEC - 1));
    assert!(admitted(&s, &[(0, 1)], now + 2 * SEC));
    let mut count = 0;
    for ms in (2001..=12_000).step_by(1) {
        if admitted(&s, &[(0, 1)], now + ms * 1_000_000) {
            count += 1;
        }
    }
    assert_eq!(count, 5, "one every 2 s over 10 s");
    // Another key is untouched.
    assert!(admitted(&s, &[(0, 2)], now));
}

#[test]
fn remaining_and_reset_follow_the_bucket() {
    let s = store(&[(10, 60, 10)], 100);
    let d = s.check(&[(0, 7)], 0);
    assert_eq!(d.states()[0].remaining, 9);
    assert_eq!(d.states()[0].reset, Duration::from_secs(6));
    let d = s.check(&[(0, 7)], 0);
    assert_eq!(d.states()[0].remaining, 8);
    assert_eq!(d.states()[0].reset, Duration::from_secs(12));
}

#[test]
fn a_refusal_by_one_policy_spends_nothing_from_the_others() {
    // Policy 0: 100/min. Policy 1: 2/min.
    let s = store(&[(100, 60, 100), (2, 60, 2)], 100);
    let both = [(0, 9), (1, 9)];
    assert!(admitted(&s, &both, 0));
    assert!(admitted(&s, &both, 0));
    for _ in 0..50 {
        let d = s.check(&both, 0);
        assert!(!d.admitted());
        assert!(!d.states()[0].limited);
        assert!(d.states()[1].limited);
        // Policy 0 still reports 98: the refusals cost it nothing.
        assert_eq!(d.states()[0].remaining, 98);
    }
    assert_eq!(s.check(&[(0, 9)], 0).states()[0].remaining, 97);
}

#[test]
fn a_lost_race_rolls_back_what_was_charged() {
    let s = store(&[(100, 60, 100), (1, 60, 1)], 100);
    let now = 0;
    // Simulate the race: between the check phase and the commit, the last slot of policy 1 goes.
    let before = s.policy(0).read(5);
    let (previous, verdict) = s.policy(0).commit(5, now).unwrap();
    let Verdict::Admit { tat, .. } = verdict else {
        unreachable!()
    };
    assert!(s.policy(1).commit(5, now).is_ok());
    assert!(s.policy(1).commit(5, now).is_err());
    s.policy(0).rollback(5, previous, tat);
    assert_eq!(s.policy(0).read(5), before);
    // A rollback after someone else moved the key leaves their charge alone.
    let (previous, _) = s.policy(0).commit(5, now).unwrap();
    let (_, Verdict::Admit { tat: theirs, .. }) = s.policy(0).commit(5, now).unwrap() else {
        unreachable!()
    };
    s.policy(0).rollback(5, previous, previous + 1);
    assert_eq!(s.policy(0).read(5), theirs);
}

#[test]
fn idle_keys_are_swept_and_carry_no_state() {
    let s = store(&[(1, 1, 1)], 10_000);
    for key in 0..1000u64 {
        assert!(admitted(&s, &[(0, key << 32 | key)], 0));
    }
    assert_eq!(s.policy(0).len(), 1000);
    // A second later every bucket is full again, but the shard has not grown: nothing yet.
    assert!(admitted(&s, &[(0, 5000)], 2 * SEC));
    assert_eq!(s.policy(0).len(), 1001);
    // Past the sweep interval, the next insert into each shard sweeps it (keys 5000 and 5001
    // land in the two shards: bit 32 picks the shard).
    assert!(admitted(&s, &[(0, 5000 << 32)], 11 * SEC));
    assert!(admitted(&s, &[(0, 5001 << 32)], 11 * SEC));
    assert_eq!(s.policy(0).len(), 2);
}

#[test]
fn a_flood_of_distinct_keys_never_exceeds_the_cap() {
    let cap = 10_000;
    let s = store(&[(1, 3600, 1)], cap);
    let hasher = RandomState::new();
    for i in 0..200_000u64 {
        let key = hasher.hash_one(i);
        // Every key stays live for an hour: nothing is idle, so the cap must evict.
        assert!(admitted(&s, &[(0, key)], i + 1));
        assert!(s.policy(0).len() <= cap);
    }
    assert!(s.policy(0).len() > cap / 2);
    // The keys closest to expiry (the oldest charges) went first; the newest is still limited.
    let newest = hasher.hash_one(199_999u64);
    assert!(
        !admitted(&s, &[(0, newest)], 200_001),
        "newest key forgotten"
    );
}

#[test]
fn keys_deep_in_debt_survive_a_flood() {
    let cap = 1000;
    // Burst 100: a key can run far ahead.
    let s = store(&[(1, 60, 100)], cap);
    let abuser = 42u64;
    for _ in 0..100 {
        assert!(admitted(&s, &[(0, abuser)], 0));
    }
    assert!(!admitted(&s, &[(0, abuser)], 0));
    let hasher = RandomState::new();
    for i in 0..50_000u64 {
        assert!(admitted(&s, &[(0, hasher.hash_one(i))], 1));
    }
    assert!(s.policy(0).len() <= cap);
    // The abuser's TAT is 100 minutes ahead, the flood's one minute: the abuser was kept.
    assert!(!admitted(&s, &[(0, abuser)], 2));
}

#[test]
fn the_keys_gauge_tracks_the_map() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let metrics = ::metrics::with_local_recorder(&recorder, || StoreMetrics::new("p"));
    let s = LocalStore::new(Box::new([PolicyStore::new(
        Gcra::new(1, Duration::from_secs(60), 1),
        100,
        metrics,
    )]));
    let hasher = RandomState::new();
    // A snapshot drains the debugging recorder's values: the gauge is the sum of the deltas.
    let mut gauge = 0.0;
    for i in 0..2000u64 {
        assert!(admitted(&s, &[(0, hasher.hash_one(i))], 0));
        gauge += snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .find_map(|(k, _, _, v)| match v {
                DebugValue::Gauge(g) if k.key().name() == crate::metrics::KEYS => {
                    Some(g.into_inner())
                }
                _ => None,
            })
            .unwrap_or(0.0);
        #[allow(clippy::cast_precision_loss)]
        let len = s.policy(0).len() as f64;
        assert!((gauge - len).abs() < 0.5, "{i}: gauge {gauge}, keys {len}");
    }
}

#[test]
fn the_client_ip_fast_path_hashes_as_the_key_does() {
    let s = LocalStore::new(Box::new([]));
    for ip in ["192.0.2.7", "10.0.0.1", "2001:db8::", "::ffff:10.0.0.1"] {
        let ip: std::net::IpAddr = ip.parse().unwrap();
        let ip = ip.to_canonical();
        assert_eq!(s.hash_ip(Some(ip)), s.hash(&Key::ip(ip)), "{ip}");
    }
    assert_eq!(s.hash_ip(None), s.hash(&crate::key::UNKNOWN_CLIENT));
}
