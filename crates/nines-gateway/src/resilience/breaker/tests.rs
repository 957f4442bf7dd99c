use super::*;
use tokio::time::advance;

fn breaker() -> Arc<Breaker> {
    Breaker::new("d#0".into(), Policy::default())
}

fn fail(b: &Arc<Breaker>) {
    b.admit().unwrap().record(Signal::Failure);
}

#[tokio::test(start_paused = true)]
async fn opens_after_five_consecutive_failures_and_half_opens_after_cooldown() {
    let b = breaker();
    for _ in 0..4 {
        fail(&b);
    }
    assert_eq!(b.phase(), Phase::Closed);
    fail(&b);
    assert!(matches!(b.phase(), Phase::Open { .. }));
    let rejected = b.admit().unwrap_err();
    assert_eq!(
        rejected.until,
        Some(Instant::now() + Duration::from_secs(30))
    );

    advance(Duration::from_secs(29)).await;
    assert!(b.admit().is_err());
    advance(Duration::from_secs(1)).await;
    let probe = b.admit().unwrap();
    assert!(probe.is_probe());
    // Exactly one probe.
    assert_eq!(b.admit().unwrap_err().until, None);
    probe.record(Signal::Success);
    assert_eq!(b.phase(), Phase::Closed);
    assert!(!b.admit().unwrap().is_probe());
}

#[tokio::test(start_paused = true)]
async fn a_success_resets_the_consecutive_count() {
    let b = breaker();
    for _ in 0..4 {
        fail(&b);
    }
    b.admit().unwrap().record(Signal::Success);
    for _ in 0..4 {
        fail(&b);
    }
    assert_eq!(b.phase(), Phase::Closed);
}

#[tokio::test(start_paused = true)]
async fn failed_probe_reopens_with_doubled_cooldown_up_to_the_cap() {
    let b = breaker();
    for _ in 0..5 {
        fail(&b);
    }
    let mut expected = 30;
    for _ in 0..6 {
        advance(Duration::from_secs(expected)).await;
        let probe = b.admit().unwrap();
        assert!(probe.is_probe());
        probe.record(Signal::Failure);
        expected = (expected * 2).min(300);
        let until = b.admit().unwrap_err().until.unwrap();
        assert_eq!(until - Instant::now(), Duration::from_secs(expected));
    }
    assert_eq!(expected, 300);
}

#[tokio::test(start_paused = true)]
async fn cancelled_probe_frees_its_slot() {
    let b = breaker();
    for _ in 0..5 {
        fail(&b);
    }
    advance(Duration::from_secs(30)).await;
    let probe = b.admit().unwrap();
    assert!(b.admit().is_err());
    drop(probe);
    assert!(b.admit().unwrap().is_probe(), "a new probe may go");
}

#[tokio::test(start_paused = true)]
async fn failure_rate_over_half_in_the_window_trips() {
    let b = breaker();
    // 10 requests: alternate so that the consecutive rule never fires; 6 of 10 fail.
    for i in 0..10 {
        let signal = if i % 5 == 0 || i % 5 == 2 {
            Signal::Success
        } else {
            Signal::Failure
        };
        if b.phase() != Phase::Closed {
            break;
        }
        b.admit().unwrap().record(signal);
        advance(Duration::from_millis(100)).await;
    }
    assert!(matches!(b.phase(), Phase::Open { .. }));
}

#[tokio::test(start_paused = true)]
async fn old_failures_age_out_of_the_window() {
    let b = breaker();
    for i in 0..9 {
        let signal = if i % 3 == 0 {
            Signal::Success
        } else {
            Signal::Failure
        };
        b.admit().unwrap().record(signal);
    }
    advance(Duration::from_secs(31)).await;
    // 6 old failures have aged out; these 10 new requests are mostly fine.
    for i in 0..10 {
        let signal = if i % 4 == 0 {
            Signal::Failure
        } else {
            Signal::Success
        };
        b.admit().unwrap().record(signal);
    }
    assert_eq!(b.phase(), Phase::Closed);
}

#[tokio::test(start_paused = true)]
async fn retry_after_opens_until_then_and_neutral_counts_nothing() {
    let b = breaker();
    let until = Instant::now() + Duration::from_secs(7);
    b.admit().unwrap().record(Signal::OpenUntil(Some(until)));
    assert_eq!(b.admit().unwrap_err().until, Some(until));
    advance(Duration::from_secs(7)).await;
    b.admit().unwrap().record(Signal::Success);
    assert_eq!(b.phase(), Phase::Closed);
    for _ in 0..20 {
        b.admit().unwrap().record(Signal::Neutral);
    }
    assert_eq!(b.phase(), Phase::Closed);
}
