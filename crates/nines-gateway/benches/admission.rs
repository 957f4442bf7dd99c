//! Admission cost in memory: the plan for an identity with RPM and TPM limits at org, user and
//! key level (plus a per-model limit), the atomic check-and-reserve, and the settlement after
//! the response; and the SHA-256 of a key, which every authenticated request pays. Target: the
//! whole admission under 2 µs.
//!
//! `cargo bench -p nines-gateway --bench admission`

use nines_gateway::auth::{Identity, Level, Subject};
use nines_gateway::config::access::{Limits, ModelLimits};
use nines_gateway::limits::Plan;
use nines_gateway::limits::memory::MemoryLimiter;
use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::SystemTime;

fn main() {
    divan::main();
}

fn big(models: bool) -> Arc<Limits> {
    let mut per_model = BTreeMap::new();
    if models {
        per_model.insert(
            "chat".to_owned(),
            ModelLimits {
                rpm: Some(u32::MAX as u64),
                tpm: Some(u32::MAX as u64),
            },
        );
    }
    Arc::new(Limits {
        rpm: Some(u32::MAX as u64),
        tpm: Some(u32::MAX as u64),
        models: per_model,
        daily_budget: Some(1e12),
        monthly_budget: None,
    })
}

fn identity() -> Identity {
    let subject = |level: Level, name: &str, models: bool| Subject {
        level,
        id: Arc::from(format!("{}_{name}", level.as_str())),
        name: Arc::from(name),
        limits: big(models),
    };
    Identity {
        org: Some(subject(Level::Org, "acme", false)),
        user: Some(subject(Level::User, "alice", false)),
        key: Some(subject(Level::Key, "laptop", true)),
        models: None,
    }
}

/// Plan + check-and-reserve + settle, one request's whole admission work.
#[divan::bench]
fn admit_and_settle_three_levels(bencher: divan::Bencher) {
    let limiter = MemoryLimiter::new();
    let id = identity();
    bencher.bench(|| {
        let plan = Plan::new(&id, black_box("chat"), 600, SystemTime::now());
        let admitted = limiter.try_admit(&plan).ok();
        if let Some(a) = admitted {
            limiter.settle_now(&a.reservation, Some(40), 0.0001);
        }
    });
}

/// The same from 2 threads at once (the mutex under contention).
#[divan::bench(threads = 2)]
fn admit_and_settle_contended(bencher: divan::Bencher) {
    let limiter = MemoryLimiter::new();
    let id = identity();
    bencher.bench(|| {
        let plan = Plan::new(&id, black_box("chat"), 600, SystemTime::now());
        if let Ok(a) = limiter.try_admit(&plan) {
            limiter.settle_now(&a.reservation, Some(40), 0.0001);
        }
    });
}

/// The hash every authenticated request computes to find its key.
#[divan::bench]
fn hash_key() -> String {
    nines_gateway::auth::hash_key(black_box(
        "sk-nines-3R3zS6r5hTdLdmaXim0uJgAcaXu2DM8Dchh3cfqxb3r",
    ))
}
