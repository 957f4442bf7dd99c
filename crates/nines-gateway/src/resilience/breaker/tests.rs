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
    assert_eq!(b.phase(), Phase::Closed, "the provider's wait simply ends");
    // Every request that waited for it may go at once: no single probe.
    let permits: Vec<Permit> = (0..3).map(|_| b.admit().unwrap()).collect();
    assert!(permits.iter().all(|p| !p.is_probe()));
    for p in permits {
        p.record(Signal::Success);
    }
    assert_eq!(b.phase(), Phase::Closed);
    assert_eq!(b.ramp_share(), 1.0, "no slow start after a Retry-After");
    for _ in 0..20 {
        b.admit().unwrap().record(Signal::Neutral);
    }
    assert_eq!(b.phase(), Phase::Closed);
}

/// Trips, cools down for 30 s and closes on a successful probe.
async fn trip_and_recover(b: &Arc<Breaker>, cooldown: u64) {
    for _ in 0..5 {
        fail(b);
    }
    advance(Duration::from_secs(cooldown)).await;
    b.admit().unwrap().record(Signal::Success);
    assert_eq!(b.phase(), Phase::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_recovered_slot_ramps_up_over_the_slow_start_window() {
    let b = breaker();
    assert_eq!(
        b.ramp_share(),
        1.0,
        "a slot that never tripped is not ramping"
    );
    trip_and_recover(&b, 30).await;
    assert!((b.ramp_share() - 0.1).abs() < 1e-9, "{}", b.ramp_share());
    advance(Duration::from_secs(15)).await;
    assert!((b.ramp_share() - 0.55).abs() < 1e-9, "{}", b.ramp_share());
    advance(Duration::from_secs(15)).await;
    assert_eq!(b.ramp_share(), 1.0);
    // The ramp is over: the trips in a row were forgiven, the next trip cools down 30 s again.
    for _ in 0..5 {
        fail(&b);
    }
    let until = b.admit().unwrap_err().until.unwrap();
    assert_eq!(until - Instant::now(), Duration::from_secs(30));
}

#[tokio::test(start_paused = true)]
async fn one_failure_during_the_ramp_reopens_with_the_doubled_cooldown() {
    let b = breaker();
    trip_and_recover(&b, 30).await;
    advance(Duration::from_secs(10)).await;
    fail(&b);
    let until = b.admit().unwrap_err().until.unwrap();
    assert_eq!(until - Instant::now(), Duration::from_secs(60));
    assert_eq!(b.ramp_share(), 1.0, "an open slot is not ramping");
}

#[tokio::test(start_paused = true)]
async fn the_routers_one_read_agrees_with_phase_and_ramp_share() {
    let b = breaker();
    assert_eq!(b.lead_share(), Some(1.0), "never tripped");
    for _ in 0..5 {
        fail(&b);
    }
    assert!(matches!(b.phase(), Phase::Open { .. }));
    assert_eq!(b.lead_share(), None, "open");
    advance(Duration::from_secs(30)).await;
    assert_eq!(b.phase(), Phase::HalfOpen);
    assert_eq!(
        b.lead_share(),
        Some(1.0),
        "half-open is not open, and not ramping"
    );
    b.admit().unwrap().record(Signal::Success);
    let share = b.lead_share().unwrap();
    assert!((share - 0.1).abs() < 1e-9, "ramping: {share}");
    assert_eq!(b.lead_share(), Some(b.ramp_share()));
}

#[tokio::test(start_paused = true)]
async fn slow_start_zero_returns_all_traffic_at_once() {
    let b = Breaker::new(
        "d#0".into(),
        Policy {
            slow_start: Duration::ZERO,
            ..Policy::default()
        },
    );
    trip_and_recover(&b, 30).await;
    assert_eq!(b.ramp_share(), 1.0);
    fail(&b);
    assert_eq!(
        b.phase(),
        Phase::Closed,
        "one failure is not a trip without a ramp"
    );
}

fn trip(b: &Arc<Breaker>) {
    for _ in 0..5 {
        fail(b);
    }
    assert!(matches!(b.phase(), Phase::Open { .. }));
}

#[tokio::test(start_paused = true)]
async fn an_early_probe_goes_once_per_interval_and_its_success_closes_the_breaker() {
    let b = breaker();
    trip(&b);
    assert!(
        b.admit_early().is_none(),
        "not within an interval of opening"
    );
    advance(Duration::from_secs(1)).await;
    let early = b.admit_early().expect("one early probe after the interval");
    assert!(early.is_early_probe());
    assert!(b.admit_early().is_none(), "one in flight at a time");
    let rejected = b.admit().unwrap_err();
    assert!(rejected.probing && rejected.until.is_some());
    assert!(b.probing());
    early.record(Signal::Success);
    assert_eq!(b.phase(), Phase::Closed, "29 s before the cooldown ends");
    assert!(!b.probing());
    assert!(b.ramp_share() < 0.2, "a slow start, as after any close");
}

#[tokio::test(start_paused = true)]
async fn a_failed_early_probe_leaves_the_open_period_as_it_was() {
    let b = breaker();
    trip(&b);
    let until = b.admit().unwrap_err().until.unwrap();
    advance(Duration::from_secs(1)).await;
    b.admit_early().unwrap().record(Signal::Failure);
    assert_eq!(b.admit().unwrap_err().until, Some(until), "no new trip");
    assert!(b.admit_early().is_none(), "the next only an interval later");
    advance(Duration::from_secs(1)).await;
    // Dropped unused (the client went away): the probe slot is freed.
    drop(b.admit_early().unwrap());
    assert!(!b.probing());
    advance(Duration::from_secs(28)).await;
    assert!(
        b.admit().unwrap().is_probe(),
        "the cooldown ends as planned"
    );
}

#[tokio::test(start_paused = true)]
async fn retry_after_and_broken_keys_are_never_probed_early() {
    let b = breaker();
    let until = Instant::now() + Duration::from_secs(20);
    b.admit().unwrap().record(Signal::OpenUntil(Some(until)));
    advance(Duration::from_secs(5)).await;
    assert!(b.admit_early().is_none(), "the provider said when");
    let k = breaker();
    k.admit().unwrap().record(Signal::OpenUntil(None));
    advance(Duration::from_secs(5)).await;
    assert!(k.admit_early().is_none(), "a broken key stays broken");
    let off = Breaker::new(
        "d#1".into(),
        Policy {
            early_probe_interval: Duration::ZERO,
            ..Policy::default()
        },
    );
    trip(&off);
    advance(Duration::from_secs(5)).await;
    assert!(off.admit_early().is_none(), "0 turns early probes off");
}

#[tokio::test(start_paused = true)]
async fn a_probe_ending_wakes_those_waiting_on_the_slot() {
    let b = breaker();
    trip(&b);
    advance(Duration::from_secs(1)).await;
    let early = b.admit_early().unwrap();
    let waiter = {
        let b = Arc::clone(&b);
        tokio::spawn(async move { b.changed().await })
    };
    tokio::task::yield_now().await;
    early.record(Signal::Success);
    tokio::time::timeout(Duration::from_millis(10), waiter)
        .await
        .expect("woken")
        .unwrap();
}

fn shared_breaker() -> (Arc<Breaker>, Arc<Coordination>) {
    let b = breaker();
    let coordination = Arc::new(Coordination::default());
    coordination.set_shared(true);
    b.coordinate(&coordination);
    (b, coordination)
}

#[tokio::test(start_paused = true)]
async fn remote_transitions_apply_without_being_reported() {
    let b = breaker();
    let sink = EventSink::new(crate::clock::Clock::system());
    let mut events = sink.subscribe();
    b.attach(&sink);
    let until = Instant::now() + Duration::from_secs(30);
    assert!(b.apply_remote(Remote::Opened {
        until,
        hinted: false,
        trips: 2
    }));
    assert_eq!(b.phase(), Phase::Open { until });
    assert_eq!(b.shared_state().trips, 2);
    // The same state again changes nothing.
    assert!(!b.apply_remote(Remote::Opened {
        until,
        hinted: false,
        trips: 2
    }));
    assert!(b.apply_remote(Remote::Closed));
    assert_eq!(b.phase(), Phase::Closed);
    // Closing after a trip ramps up, as a local close does.
    assert!(b.ramp_share() < 0.2);
    assert!(events.try_recv().is_err(), "nothing was reported: no echo");
}

#[tokio::test(start_paused = true)]
async fn while_shared_a_cooldown_ends_in_half_open_only_with_the_probe_lease() {
    let (b, _coordination) = shared_breaker();
    for _ in 0..5 {
        fail(&b);
    }
    advance(Duration::from_secs(30)).await;
    assert!(
        !b.needs_probe_lease(false),
        "nothing here to probe with yet"
    );
    assert!(b.needs_probe_lease(true), "the prober asks");
    assert_eq!(b.admit().unwrap_err().until, None, "no lease: no probe");
    assert!(b.needs_probe_lease(false), "a request asked");
    b.grant_probe_lease(Instant::now() + Duration::from_secs(10));
    assert!(!b.needs_probe_lease(true));
    let probe = b.admit().unwrap();
    assert!(probe.is_probe());
    assert!(b.admit().is_err(), "one probe");
    probe.record(Signal::Success);
    assert_eq!(b.phase(), Phase::Closed);
    assert!(!b.needs_probe_lease(true));
}

#[tokio::test(start_paused = true)]
async fn another_replicas_half_open_holds_this_one_back_until_its_lease_lapses() {
    let (b, coordination) = shared_breaker();
    assert!(b.apply_remote(Remote::HalfOpen));
    assert_eq!(b.admit().unwrap_err().until, None);
    assert!(
        b.needs_probe_lease(false),
        "a request asked: takes over if the holder's lease lapses"
    );
    // Redis goes away: this replica decides alone again.
    coordination.set_shared(false);
    assert!(b.admit().unwrap().is_probe());
}

/// Shared and tripped, an interval past opening: a request may ask to probe early.
async fn shared_and_open() -> (Arc<Breaker>, Arc<Coordination>) {
    let (b, coordination) = shared_breaker();
    trip(&b);
    advance(Duration::from_secs(1)).await;
    (b, coordination)
}

/// A task waiting for `b` to change, registered before it returns.
async fn waiting_on(b: &Arc<Breaker>) -> tokio::task::JoinHandle<()> {
    let b = Arc::clone(b);
    let waiter = tokio::spawn(async move { b.changed().await });
    tokio::task::yield_now().await;
    waiter
}

async fn woken(waiter: tokio::task::JoinHandle<()>) {
    tokio::time::timeout(Duration::from_millis(10), waiter)
        .await
        .expect("woken")
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn while_shared_an_early_probe_needs_the_early_lease_and_one_request_takes_it() {
    let (b, _coordination) = shared_and_open().await;
    assert_eq!(b.needs_early_lease(), None, "nobody asked yet");
    assert!(b.admit_early().is_none(), "no lease: no early probe");
    assert!(b.awaits_early_lease(), "the request waits for the answer");
    assert!(b.probing(), "and so does await_probe");
    assert_eq!(
        b.needs_early_lease(),
        Some(Duration::from_secs(1)),
        "asked for one interval"
    );
    assert!(b.admit_early().is_none(), "a second request waits too");
    let waiter = waiting_on(&b).await;
    b.grant_early_lease(Instant::now() + Duration::from_millis(900));
    woken(waiter).await;
    assert!(!b.probing(), "granted: waiters look again at once");
    assert!(b.awaits_early_lease());
    assert_eq!(b.needs_early_lease(), None);
    let early = b.admit_early().expect("the lease's probe");
    assert!(early.is_early_probe());
    assert!(b.admit_early().is_none(), "one request per lease");
    assert!(!b.awaits_early_lease());
    assert!(b.probing(), "the others wait for its outcome");
    early.record(Signal::Failure);
    assert!(matches!(b.phase(), Phase::Open { .. }));
    assert!(b.admit_early().is_none());
    assert_eq!(
        b.needs_early_lease(),
        None,
        "the lease is spent: nothing more within the interval"
    );
    advance(Duration::from_secs(1)).await;
    assert!(b.admit_early().is_none());
    assert_eq!(
        b.needs_early_lease(),
        Some(Duration::from_secs(1)),
        "the next interval's lease"
    );
    b.grant_early_lease(Instant::now() + Duration::from_millis(900));
    b.admit_early().unwrap().record(Signal::Success);
    assert_eq!(b.phase(), Phase::Closed, "its success closes the breaker");
    assert!(!b.probing() && !b.awaits_early_lease());
}

#[tokio::test(start_paused = true)]
async fn an_unused_early_lease_lapses_a_little_before_redis_drops_it() {
    let (b, _coordination) = shared_and_open().await;
    assert!(b.admit_early().is_none());
    b.grant_early_lease(Instant::now() + Duration::from_millis(900));
    advance(Duration::from_millis(900)).await;
    assert!(!b.awaits_early_lease(), "lapsed");
    assert!(b.admit_early().is_none(), "no probe on a lapsed lease");
    assert_eq!(b.needs_early_lease(), Some(Duration::from_secs(1)));
}

#[tokio::test(start_paused = true)]
async fn a_refused_early_lease_sends_the_waiters_on_and_none_asks_while_the_holders_runs() {
    let (b, _coordination) = shared_and_open().await;
    assert!(b.admit_early().is_none());
    let waiter = waiting_on(&b).await;
    b.refuse_early_lease(Duration::from_millis(700));
    woken(waiter).await;
    assert!(
        !b.probing() && !b.awaits_early_lease(),
        "nothing to wait for: the 'all open' answer at once"
    );
    assert!(b.admit_early().is_none());
    assert_eq!(b.needs_early_lease(), None, "another replica's lease runs");
    advance(Duration::from_millis(699)).await;
    assert!(b.admit_early().is_none());
    assert_eq!(b.needs_early_lease(), None);
    advance(Duration::from_millis(1)).await;
    assert!(b.admit_early().is_none());
    assert!(b.needs_early_lease().is_some(), "asked for again");
    // A grant that arrives after the slot closed (another replica's probe succeeded) is moot.
    assert!(b.apply_remote(Remote::Closed));
    assert!(!b.probing(), "the close cleared the want");
    b.grant_early_lease(Instant::now() + Duration::from_millis(900));
    assert!(!b.awaits_early_lease());
}

#[tokio::test(start_paused = true)]
async fn while_shared_retry_after_and_broken_keys_never_ask_for_an_early_lease() {
    let (b, _coordination) = shared_breaker();
    let until = Instant::now() + Duration::from_secs(20);
    b.admit().unwrap().record(Signal::OpenUntil(Some(until)));
    advance(Duration::from_secs(5)).await;
    assert!(b.admit_early().is_none());
    assert!(b.needs_early_lease().is_none() && !b.probing());
    let (k, _coordination) = shared_breaker();
    k.admit().unwrap().record(Signal::OpenUntil(None));
    advance(Duration::from_secs(5)).await;
    assert!(k.admit_early().is_none());
    assert!(k.needs_early_lease().is_none() && !k.probing());
}

#[tokio::test(start_paused = true)]
async fn when_breakers_stop_being_shared_a_waiting_request_probes_early_alone() {
    let (b, coordination) = shared_and_open().await;
    assert!(b.admit_early().is_none());
    let waiter = waiting_on(&b).await;
    coordination.set_shared(false);
    assert!(b.needs_early_lease().is_none(), "nothing to ask Redis for");
    b.unshare_early_lease();
    woken(waiter).await;
    assert!(!b.probing() && !b.awaits_early_lease());
    let early = b.admit_early().expect("as on one replica, without a lease");
    assert!(early.is_early_probe());
    assert!(b.admit_early().is_none(), "one per interval, as ever");
}
