//! Flapping: a deployment whose breakers open, close and open again every few seconds is one
//! incident with several episodes, not a card per opening. Its incidents (any of its key slots)
//! that start within `[status] incident_merge_window` (10 minutes by default) of the previous
//! one's end, or while it lasts, are merged: the first opening to the last close (open while any
//! episode is), the first episode's reason, the key slots involved, breaker trips and episodes
//! summed.

use super::snapshot::{Incident, rfc3339};
use std::collections::HashMap;
use std::time::Duration;

/// `incidents` (any order) with each deployment's flapping runs merged; open ones first, then
/// closed, each newest first.
pub fn merge(mut incidents: Vec<Incident>, window: Duration, now_ms: u64) -> Vec<Incident> {
    let window_ms = window.as_millis() as u64;
    incidents.sort_by_key(|i| i.opened_at_ms);
    let mut merged: Vec<Incident> = Vec::with_capacity(incidents.len());
    // Deployment → index in `merged` of its latest incident.
    let mut latest: HashMap<String, usize> = HashMap::new();
    for i in incidents {
        if let Some(&at) = latest.get(&i.deployment) {
            let run = &mut merged[at];
            let within = run
                .closed_at_ms
                .is_none_or(|end| i.opened_at_ms <= end.saturating_add(window_ms));
            if within {
                absorb(run, i, now_ms);
                continue;
            }
        }
        latest.insert(i.deployment.clone(), merged.len());
        merged.push(i);
    }
    merged.sort_by_key(|i| (i.closed_at_ms.is_some(), std::cmp::Reverse(i.opened_at_ms)));
    merged
}

/// Adds a later episode to a run of the same deployment.
fn absorb(run: &mut Incident, episode: Incident, now_ms: u64) {
    run.closed_at_ms = match (run.closed_at_ms, episode.closed_at_ms) {
        (Some(a), Some(b)) => Some(a.max(b)),
        _ => None,
    };
    run.closed_at = run.closed_at_ms.map(rfc3339);
    run.duration_ms = run
        .closed_at_ms
        .unwrap_or(now_ms)
        .saturating_sub(run.opened_at_ms);
    run.trips += episode.trips;
    run.episodes += episode.episodes;
    for slot in episode.key_slots {
        if !run.key_slots.contains(&slot) {
            run.key_slots.push(slot);
        }
    }
    for route in episode.routes {
        if !run.routes.contains(&route) {
            run.routes.push(route);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60_000;

    fn incident(deployment: &str, slot: usize, opened: u64, closed: Option<u64>) -> Incident {
        let key_slot = format!("{deployment}#{slot}");
        Incident {
            deployment: deployment.to_owned(),
            key_slot: key_slot.clone(),
            key_slots: vec![key_slot],
            routes: vec!["chat".to_owned()],
            opened_at: rfc3339(opened),
            opened_at_ms: opened,
            closed_at: closed.map(rfc3339),
            closed_at_ms: closed,
            duration_ms: closed.unwrap_or(100 * MIN) - opened,
            reason: format!("reason at {opened}"),
            trips: 1,
            episodes: 1,
        }
    }

    #[test]
    fn a_deployment_flapping_within_the_window_is_one_incident() {
        // Three 20-second episodes a minute apart, then one 30 minutes later.
        let list = vec![
            incident("d0", 0, 10 * MIN, Some(10 * MIN + 20_000)),
            incident("d0", 0, 11 * MIN, Some(11 * MIN + 20_000)),
            incident("d0", 1, 12 * MIN, Some(12 * MIN + 20_000)),
            incident("d0", 0, 45 * MIN, Some(46 * MIN)),
        ];
        let merged = merge(list, Duration::from_secs(600), 100 * MIN);
        assert_eq!(merged.len(), 2, "{merged:#?}");
        let late = &merged[0];
        assert_eq!(late.opened_at_ms, 45 * MIN);
        assert_eq!(late.episodes, 1);
        let run = &merged[1];
        assert_eq!(run.episodes, 3);
        assert_eq!(run.trips, 3);
        assert_eq!(run.opened_at_ms, 10 * MIN);
        assert_eq!(run.closed_at_ms, Some(12 * MIN + 20_000));
        assert_eq!(run.duration_ms, 2 * MIN + 20_000);
        assert_eq!(run.reason, format!("reason at {}", 10 * MIN), "the first's");
        assert_eq!(run.key_slots, ["d0#0", "d0#1"]);
    }

    #[test]
    fn an_episode_still_open_keeps_the_run_open() {
        let list = vec![
            incident("d0", 0, 10 * MIN, Some(11 * MIN)),
            incident("d0", 0, 15 * MIN, None),
        ];
        let merged = merge(list, Duration::from_secs(600), 20 * MIN);
        assert_eq!(merged.len(), 1);
        assert_eq!(merged[0].closed_at_ms, None);
        assert_eq!(merged[0].duration_ms, 10 * MIN, "until now");
        assert_eq!(merged[0].episodes, 2);
    }

    #[test]
    fn other_deployments_and_a_zero_window_stay_apart() {
        let list = vec![
            incident("d0", 0, 10 * MIN, Some(11 * MIN)),
            incident("d1", 0, 10 * MIN + 1, Some(11 * MIN)),
            incident("d0", 0, 11 * MIN + 1, Some(12 * MIN)),
        ];
        assert_eq!(merge(list.clone(), Duration::ZERO, 20 * MIN).len(), 3);
        let merged = merge(list, Duration::from_secs(60), 20 * MIN);
        assert_eq!(merged.len(), 2);
        assert!(
            merged
                .iter()
                .any(|i| i.deployment == "d1" && i.episodes == 1)
        );
        assert!(
            merged
                .iter()
                .any(|i| i.deployment == "d0" && i.episodes == 2)
        );
    }

    #[test]
    fn open_incidents_come_first_then_newest() {
        let list = vec![
            incident("d0", 0, 10 * MIN, None),
            incident("d1", 0, 30 * MIN, Some(31 * MIN)),
            incident("d2", 0, 50 * MIN, Some(51 * MIN)),
        ];
        let merged = merge(list, Duration::from_secs(60), 60 * MIN);
        let order: Vec<&str> = merged.iter().map(|i| i.deployment.as_str()).collect();
        assert_eq!(order, ["d0", "d2", "d1"]);
    }
}
