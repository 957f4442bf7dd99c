use std::time::Duration;

use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn admitted(script: &FaultScript, elapsed: Duration, requests: u64) -> Vec<u64> {
    (0..requests)
        .filter(|seq| script.gates_admit(elapsed, *seq))
        .collect()
}

#[test]
fn no_gates_admit_everything() {
    let script = FaultScript::status(429);
    assert_eq!(admitted(&script, ms(0), 5), [0, 1, 2, 3, 4]);
}

#[test]
fn even_share_is_exact_and_starts_with_the_first_request() {
    let half = FaultScript {
        fail_percent: Some(50.0),
        ..FaultScript::default()
    };
    assert_eq!(admitted(&half, ms(0), 6), [0, 2, 4]);

    let quarter = FaultScript {
        fail_percent: Some(25.0),
        ..FaultScript::default()
    };
    assert_eq!(admitted(&quarter, ms(0), 100).len(), 25);

    let never = FaultScript {
        fail_percent: Some(0.0),
        ..FaultScript::default()
    };
    assert!(admitted(&never, ms(0), 100).is_empty());
}

#[test]
fn seeded_share_is_reproducible_and_roughly_right() {
    let script = |seed| FaultScript {
        fail_percent: Some(30.0),
        seed: Some(seed),
        ..FaultScript::default()
    };
    let a = admitted(&script(7), ms(0), 1000);
    assert_eq!(a, admitted(&script(7), ms(0), 1000));
    assert_ne!(a, admitted(&script(8), ms(0), 1000));
    assert!((250..350).contains(&a.len()), "got {}", a.len());
}

#[test]
fn window_applies_between_from_and_to() {
    let script = FaultScript {
        down_from_ms: Some(100),
        down_to_ms: Some(200),
        ..FaultScript::default()
    };
    assert!(!script.gates_admit(ms(99), 0));
    assert!(script.gates_admit(ms(100), 0));
    assert!(script.gates_admit(ms(199), 0));
    assert!(!script.gates_admit(ms(200), 0));

    let open_ended = FaultScript {
        down_from_ms: Some(100),
        ..FaultScript::default()
    };
    assert!(open_ended.gates_admit(ms(1_000_000), 0));
    // A window with no effect is an outage.
    assert_eq!(script.effective_status(), Some(503));
}

#[test]
fn cycle_is_down_at_the_start_of_each_period() {
    let script = FaultScript {
        cycle_period_ms: Some(1000),
        cycle_down_ms: Some(300),
        ..FaultScript::default()
    };
    for (at, down) in [
        (0, true),
        (299, true),
        (300, false),
        (999, false),
        (1000, true),
        (2299, true),
        (2300, false),
    ] {
        assert_eq!(script.gates_admit(ms(at), 0), down, "at {at} ms");
    }
    let default_half = FaultScript {
        cycle_period_ms: Some(1000),
        ..FaultScript::default()
    };
    assert!(default_half.gates_admit(ms(499), 0));
    assert!(!default_half.gates_admit(ms(500), 0));
}

#[test]
fn effects_decide_the_status() {
    assert_eq!(FaultScript::default().effective_status(), Some(503));
    assert_eq!(FaultScript::status(429).effective_status(), Some(429));
    let slow = FaultScript {
        latency_ms: Some(10),
        ..FaultScript::default()
    };
    assert_eq!(slow.effective_status(), None);
    assert_eq!(slow.head_delay(), ms(10));
}

#[test]
fn validation_refuses_meaningless_numbers() {
    assert_eq!(
        FaultScript::status(42).validate(),
        Err(FaultError::Status(42))
    );
    let bad_share = FaultScript {
        fail_percent: Some(101.0),
        ..FaultScript::default()
    };
    assert!(bad_share.validate().is_err());
    let bad_cycle = FaultScript {
        cycle_period_ms: Some(100),
        cycle_down_ms: Some(200),
        ..FaultScript::default()
    };
    assert!(bad_cycle.validate().is_err());
    assert!(FaultScript::status(503).validate().is_ok());
}

#[test]
fn unknown_fields_are_refused() {
    assert!(serde_json::from_str::<FaultScript>(r#"{"stauts":503}"#).is_err());
    let script: FaultScript =
        serde_json::from_str(r#"{"status":529,"retry_after":"2","times":3}"#).unwrap();
    assert_eq!(script.status, Some(529));
    assert_eq!(script.times, Some(3));
    // Round trip: only set fields are written.
    assert_eq!(
        serde_json::to_string(&script).unwrap(),
        r#"{"status":529,"retry_after":"2","times":3}"#
    );
}
