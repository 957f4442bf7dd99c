//! The memory limiter by value, on a paused clock.

use super::memory::MemoryLimiter;
use super::*;
use crate::auth::Subject;
use std::collections::BTreeMap;

fn subject(level: Level, name: &str, limits: Limits) -> Subject {
    Subject {
        level,
        id: Arc::from(format!("{}_{name}", level.as_str())),
        name: Arc::from(name),
        limits: Arc::new(limits),
    }
}

fn identity(org: Limits, user: Limits, key: Limits) -> Identity {
    Identity {
        org: Some(subject(Level::Org, "acme", org)),
        user: Some(subject(Level::User, "alice", user)),
        key: Some(subject(Level::Key, "k", key)),
        models: None,
    }
}

fn rpm(n: u64) -> Limits {
    Limits {
        rpm: Some(n),
        ..Limits::default()
    }
}

fn plan(id: &Identity, model: &str, tokens: u64) -> Plan {
    Plan::new(id, model, tokens, SystemTime::now())
}

#[tokio::test(start_paused = true)]
async fn rpm_refills_over_the_minute() {
    let limiter = MemoryLimiter::new();
    let id = identity(Limits::default(), Limits::default(), rpm(3));
    for left in [2, 1, 0] {
        let a = limiter.try_admit(&plan(&id, "m", 1)).unwrap();
        assert_eq!(a.headers.requests.unwrap().remaining, left);
        assert_eq!(a.headers.requests.unwrap().limit, 3);
    }
    let denied = limiter.try_admit(&plan(&id, "m", 1)).unwrap_err();
    assert_eq!(denied.level, Level::Key);
    assert_eq!(denied.tripped, Tripped::Window(Dim::Requests));
    assert!(denied.retryable);
    assert_eq!(denied.retry_after, Duration::from_secs(20));
    tokio::time::advance(Duration::from_secs(20)).await;
    assert!(limiter.try_admit(&plan(&id, "m", 1)).is_ok());
    assert!(limiter.try_admit(&plan(&id, "m", 1)).is_err());
}

#[tokio::test(start_paused = true)]
async fn the_first_level_out_of_room_names_itself_and_nothing_is_drawn() {
    let limiter = MemoryLimiter::new();
    let id = identity(rpm(1), rpm(5), rpm(5));
    assert!(limiter.try_admit(&plan(&id, "m", 1)).is_ok());
    let denied = limiter.try_admit(&plan(&id, "m", 1)).unwrap_err();
    assert_eq!(denied.level, Level::Org);
    assert!(
        denied.message().contains("org 'acme'"),
        "{}",
        denied.message()
    );
    assert_eq!(denied.label(), "org:requests");
    // The refused request drew nothing from the user and key buckets.
    let other_org = identity(rpm(10), rpm(5), rpm(5));
    let mut other = other_org.clone();
    other.org = Some(subject(Level::Org, "globex", rpm(10)));
    let a = limiter.try_admit(&plan(&other, "m", 1)).unwrap();
    // user and key: 5 - 1 (first request) - 1 (this one) = 3 left.
    assert_eq!(a.headers.requests.unwrap().remaining, 3);
}

#[tokio::test(start_paused = true)]
async fn per_model_limits_apply_to_their_model_only() {
    let limiter = MemoryLimiter::new();
    let mut models = BTreeMap::new();
    models.insert(
        "big".to_owned(),
        ModelLimits {
            rpm: Some(1),
            tpm: None,
        },
    );
    let key = Limits {
        models,
        ..Limits::default()
    };
    let id = identity(Limits::default(), Limits::default(), key);
    assert!(limiter.try_admit(&plan(&id, "big", 1)).is_ok());
    let denied = limiter.try_admit(&plan(&id, "big", 1)).unwrap_err();
    assert_eq!(denied.model.as_deref(), Some("big"));
    for _ in 0..5 {
        assert!(limiter.try_admit(&plan(&id, "small", 1)).is_ok());
    }
}

#[tokio::test(start_paused = true)]
async fn token_reservations_are_settled_with_actual_usage() {
    let limiter = MemoryLimiter::new();
    let key = Limits {
        tpm: Some(100),
        ..Limits::default()
    };
    let id = identity(Limits::default(), Limits::default(), key);
    let first = limiter.try_admit(&plan(&id, "m", 60)).unwrap();
    assert_eq!(first.headers.tokens.unwrap().remaining, 40);
    let denied = limiter.try_admit(&plan(&id, "m", 60)).unwrap_err();
    assert_eq!(denied.tripped, Tripped::Window(Dim::Tokens));
    // It used 10, not 60: 50 come back.
    limiter.settle_now(&first.reservation, Some(10), 0.0);
    let second = limiter.try_admit(&plan(&id, "m", 60)).unwrap();
    assert_eq!(second.headers.tokens.unwrap().remaining, 30);
    // It used 130: a debt that the next minute pays back.
    limiter.settle_now(&second.reservation, Some(130), 0.0);
    let denied = limiter.try_admit(&plan(&id, "m", 10)).unwrap_err();
    assert_eq!(denied.retry_after, Duration::from_secs(30));
    // A request larger than the window can never pass.
    let too_big = limiter.try_admit(&plan(&id, "m", 101)).unwrap_err();
    assert!(!too_big.retryable);
}

#[tokio::test(start_paused = true)]
async fn budgets_refuse_once_spent_until_the_period_ends() {
    let limiter = MemoryLimiter::new();
    let user = Limits {
        daily_budget: Some(1.0),
        ..Limits::default()
    };
    let id = identity(Limits::default(), user, Limits::default());
    let a = limiter.try_admit(&plan(&id, "m", 1)).unwrap();
    limiter.settle_now(&a.reservation, Some(1), 0.6);
    let b = limiter.try_admit(&plan(&id, "m", 1)).unwrap();
    limiter.settle_now(&b.reservation, Some(1), 0.6);
    let denied = limiter.try_admit(&plan(&id, "m", 1)).unwrap_err();
    assert_eq!(denied.level, Level::User);
    assert!(matches!(denied.tripped, Tripped::Budget(Period::Day(_))));
    assert!(!denied.retryable);
    assert!(denied.retry_after <= Duration::from_secs(86_400));
    assert_eq!(denied.label(), "user:daily_budget");
    // Seeded spend (from the store, at start) counts the same.
    let fresh = MemoryLimiter::new();
    let user_id = id.user.as_ref().unwrap().id.to_string();
    fresh.seed_spend(
        Level::User,
        &user_id,
        Period::day_of(SystemTime::now()),
        2.0,
    );
    assert!(fresh.try_admit(&plan(&id, "m", 1)).is_err());
}

#[test]
fn one_hundred_threads_against_a_limit_of_ten_admit_exactly_ten() {
    let limiter = Arc::new(MemoryLimiter::new());
    let id = Arc::new(identity(Limits::default(), Limits::default(), rpm(10)));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    let admitted = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..100 {
            let limiter = Arc::clone(&limiter);
            let id = Arc::clone(&id);
            let admitted = &admitted;
            let handle = runtime.handle().clone();
            s.spawn(move || {
                let _guard = handle.enter();
                if limiter.try_admit(&plan(&id, "m", 1)).is_ok() {
                    admitted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            });
        }
    });
    assert_eq!(admitted.into_inner(), 10);
}

#[test]
fn estimates_are_bytes_over_four_plus_output() {
    assert_eq!(estimate_tokens(42, Some(600), 256), 11 + 600);
    assert_eq!(estimate_tokens(0, None, 256), 256);
}

#[test]
fn rate_headers_use_go_durations() {
    let mut h = RateHeaders::default();
    h.note(
        Dim::Requests,
        Window {
            limit: 10,
            remaining: 3,
            reset: Duration::from_millis(42_000),
        },
    );
    h.note(
        Dim::Requests,
        Window {
            limit: 100,
            remaining: 50,
            reset: Duration::from_secs(1),
        },
    );
    let mut headers = HeaderMap::new();
    h.write(&mut headers);
    assert_eq!(headers["x-ratelimit-limit-requests"], "10");
    assert_eq!(headers["x-ratelimit-remaining-requests"], "3");
    assert_eq!(headers["x-ratelimit-reset-requests"], "42s");
    assert!(headers.get("x-ratelimit-limit-tokens").is_none());
}
