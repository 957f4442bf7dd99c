use super::snapshot::{Health, Seen, State, deployment_state, overall_state, route_state};
use super::*;
use crate::resilience::breaker::Phase;
use crate::telemetry::ledger::Tally;
use tokio::time::Instant;

#[test]
fn a_deployment_is_down_when_every_key_slot_is_held_back() {
    let open = Phase::Open {
        until: Instant::now() + Duration::from_secs(30),
    };
    assert_eq!(deployment_state(&[Phase::Closed]), State::Operational);
    assert_eq!(deployment_state(&[open]), State::Down);
    assert_eq!(deployment_state(&[Phase::HalfOpen]), State::Down);
    assert_eq!(deployment_state(&[open, Phase::HalfOpen]), State::Down);
    assert_eq!(deployment_state(&[open, Phase::Closed]), State::Degraded);
    assert_eq!(deployment_state(&[]), State::Operational);
}

fn seen(requests: u64, failures: u64) -> Tally {
    Tally {
        requests,
        failures,
        ..Tally::default()
    }
}

fn health(own: &[(&str, State)], fallback: &[State], recent: &Tally) -> Health {
    route_state(
        &Seen {
            own,
            fallback,
            recent,
            latency_miss: None,
        },
        0.999,
    )
}

#[test]
fn a_route_is_what_its_clients_saw_whatever_its_deployments_do() {
    let all_served = seen(300, 0);
    let h = health(&[("a", State::Operational)], &[], &all_served);
    assert_eq!(
        (h.state, h.reasons.len(), h.note),
        (State::Operational, 0, None)
    );

    // One of three deployments down, every request served: operational, with a quiet note that
    // names no deployment (the names are for the private view).
    let own = [
        ("a", State::Down),
        ("b", State::Operational),
        ("c", State::Operational),
    ];
    let h = health(&own, &[], &all_served);
    assert_eq!(h.state, State::Operational);
    assert!(h.reasons.is_empty());
    assert_eq!(
        h.note.as_deref(),
        Some("1 of 3 providers failing; all requests served")
    );
    assert_eq!(
        h.deployment_reasons,
        vec!["deployment a is down".to_owned()]
    );
    // Without recent traffic the note claims nothing about requests.
    let h = health(&own, &[], &Tally::default());
    assert_eq!(h.note.as_deref(), Some("1 of 3 providers failing"));

    // A deployment with some keys open still serves.
    let h = health(&[("a", State::Degraded)], &[], &Tally::default());
    assert_eq!(h.state, State::Operational);
    assert_eq!(
        h.deployment_reasons,
        vec!["deployment a is degraded".to_owned()]
    );

    // Nothing can serve it: down, unless a fallback model still serves.
    let h = health(
        &[("a", State::Down), ("b", State::Down)],
        &[],
        &Tally::default(),
    );
    assert_eq!(h.state, State::Down);
    assert_eq!(h.reasons, vec!["no provider can serve it".to_owned()]);
    let h = health(&[("a", State::Down)], &[State::Operational], &all_served);
    assert_eq!(h.state, State::Operational);
    let h = health(&[("a", State::Down)], &[State::Down], &Tally::default());
    assert_eq!(h.state, State::Down);
}

#[test]
fn client_visible_failures_make_a_route_degraded_then_down() {
    let h = health(&[("a", State::Operational)], &[], &seen(100, 2));
    assert_eq!(h.state, State::Degraded);
    assert_eq!(
        h.reasons,
        vec![
            "98% of requests succeeded over the last 5 minutes, below the 99.9% objective"
                .to_owned()
        ]
    );
    // Most requests failing is an outage, breakers closed or not.
    let h = health(&[("a", State::Operational)], &[], &seen(100, 60));
    assert_eq!(h.state, State::Down);
    // With a provider down and some failures, the note says how many were served.
    let h = health(
        &[("a", State::Down), ("b", State::Operational)],
        &[],
        &seen(100, 2),
    );
    assert_eq!(h.state, State::Degraded);
    assert_eq!(
        h.note.as_deref(),
        Some("1 of 2 providers failing; 98% of requests served")
    );
    // No recent traffic is not a failure.
    let h = health(&[("a", State::Operational)], &[], &Tally::default());
    assert_eq!(h.state, State::Operational);
    // A latency objective missed (the hook) degrades.
    let h = route_state(
        &Seen {
            own: &[("a", State::Operational)],
            fallback: &[],
            recent: &seen(10, 0),
            latency_miss: Some("p95 time to first byte 2.1 s, above its 1 s objective"),
        },
        0.999,
    );
    assert_eq!(h.state, State::Degraded);
    assert_eq!(h.reasons.len(), 1);
}

#[test]
fn the_overall_state_is_down_only_when_every_route_is() {
    use State::*;
    assert_eq!(overall_state(&[]), Operational);
    assert_eq!(overall_state(&[Operational, Operational]), Operational);
    assert_eq!(overall_state(&[Operational, Degraded]), Degraded);
    assert_eq!(overall_state(&[Operational, Down]), Degraded);
    assert_eq!(overall_state(&[Down, Down]), Down);
}

#[test]
fn the_page_inlines_its_assets_and_allows_only_them() {
    let public = assembled(View::Public);
    assert!(
        !public.html.contains(PRIVATE_JS),
        "the private script is for admins only"
    );
    for word in ["breaker", "in flight", "key_slot", "in_flight"] {
        assert!(!public.html.contains(word), "{word} in the public page");
    }
    let page = assembled(View::Private);
    assert!(page.html.contains(PRIVATE_JS));
    let private_hash = super::super::html::csp_hash(PRIVATE_JS);
    assert!(page.csp.contains(&format!("'sha256-{private_hash}'")));
    assert!(page.html.contains(JS) && page.html.contains(CSS));
    assert!(
        !page.html.contains("{{css}}")
            && !page.html.contains("{{js}}")
            && !page.html.contains("{{private}}")
    );
    assert!(
        !page.html.contains("http://") && !page.html.contains("https://"),
        "nothing is fetched from elsewhere"
    );
    let js_hash = super::super::html::csp_hash(JS);
    assert!(page.csp.contains(&format!("script-src 'sha256-{js_hash}'")));
    assert!(page.csp.starts_with("default-src 'none'"));
    assert_eq!(
        super::super::html::escape("<b>\"R&D\"</b>"),
        "&lt;b&gt;&quot;R&amp;D&quot;&lt;/b&gt;"
    );
}

#[test]
fn the_cache_serves_one_body_for_its_age() {
    let cache = crate::state::Memo::default();
    let mut builds = 0;
    for _ in 0..3 {
        let body = cache.get_or_build(Duration::from_secs(60), || {
            builds += 1;
            Bytes::from_static(b"x")
        });
        assert_eq!(body, Bytes::from_static(b"x"));
    }
    assert_eq!(builds, 1);
    cache.get_or_build(Duration::ZERO, || {
        builds += 1;
        Bytes::new()
    });
    assert_eq!(builds, 2);
}
