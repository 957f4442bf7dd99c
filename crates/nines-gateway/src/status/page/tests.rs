use super::snapshot::{State, deployment_state, overall_state, route_state};
use super::*;
use crate::resilience::breaker::Phase;
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

#[test]
fn a_route_is_down_only_when_nothing_can_serve_it() {
    let slo = 0.999;
    let (state, reasons) = route_state(&[("a", State::Operational)], &[], Some(1.0), slo);
    assert_eq!((state, reasons.len()), (State::Operational, 0));

    // One deployment down, another serving: degraded, naming the down one.
    let (state, reasons) = route_state(
        &[("a", State::Down), ("b", State::Operational)],
        &[],
        Some(1.0),
        slo,
    );
    assert_eq!(state, State::Degraded);
    assert_eq!(reasons, vec!["deployment a is down".to_owned()]);

    // A deployment with some keys open still serves: not a reason on its own.
    let (state, _) = route_state(&[("a", State::Degraded)], &[], None, slo);
    assert_eq!(state, State::Operational);

    // Every own deployment down: down, unless a fallback model still serves.
    let (state, _) = route_state(&[("a", State::Down), ("b", State::Down)], &[], None, slo);
    assert_eq!(state, State::Down);
    let (state, _) = route_state(&[("a", State::Down)], &[State::Operational], None, slo);
    assert_eq!(state, State::Degraded);
    let (state, _) = route_state(&[("a", State::Down)], &[State::Down], None, slo);
    assert_eq!(state, State::Down);
}

#[test]
fn a_route_below_its_objective_recently_is_degraded() {
    let (state, reasons) = route_state(&[("a", State::Operational)], &[], Some(0.98), 0.999);
    assert_eq!(state, State::Degraded);
    assert_eq!(
        reasons,
        vec![
            "98% of requests succeeded over the last 5 minutes, below the 99.9% objective"
                .to_owned()
        ]
    );
    // No recent traffic is not a failure.
    let (state, _) = route_state(&[("a", State::Operational)], &[], None, 0.999);
    assert_eq!(state, State::Operational);
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
    let page = assembled();
    assert!(page.html.contains(JS) && page.html.contains(CSS));
    assert!(!page.html.contains("{{css}}") && !page.html.contains("{{js}}"));
    assert!(
        !page.html.contains("http://") && !page.html.contains("https://"),
        "nothing is fetched from elsewhere"
    );
    let js_hash = super::super::html::csp_hash(JS);
    assert!(page.csp.contains(&format!("script-src 'sha256-{js_hash}'")));
    assert!(page.csp.starts_with("default-src 'none'"));
    assert_eq!(
        escape_html("<b>\"R&D\"</b>"),
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
