//! Flapping: a deployment whose breakers open, close and open again every few seconds is one
//! incident with several episodes, not a card per opening. Its incidents (any of its key slots)
//! that start within `[status] incident_merge_window` (10 minutes by default) of the previous
//! one's end, or while it lasts, are merged: the first opening to the last close (open while any
//! episode is), the first episode's reason, the key slots involved, breaker trips and episodes
//! summed.

use crate::telemetry::ledger::Incident;
use std::collections::HashMap;
use std::time::Duration;

/// One deployment's incidents merged: the first episode (its opening, key slot and reason) with
/// the run's end (`None` while any episode lasts) and the trips of all.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub incident: Incident,
    /// Every key slot whose breaker opened in the run, first one first.
    pub key_slots: Vec<String>,
    /// Incidents merged into it.
    pub episodes: u32,
}

/// `incidents` (any order) with each deployment's flapping runs merged; open ones first, then
/// closed, each newest first.
pub fn merge(mut incidents: Vec<Incident>, window: Duration) -> Vec<Run> {
    let window_ms = window.as_millis() as u64;
    incidents.sort_by_key(|i| i.opened_at_ms);
    let mut runs: Vec<Run> = Vec::with_capacity(incidents.len());
    // Deployment → index in `runs` of its latest run.
    let mut latest: HashMap<String, usize> = HashMap::new();
    for i in incidents {
        if let Some(&at) = latest.get(&i.deployment) {
            let run = &mut runs[at];
            let within = run
                .incident
                .closed_at_ms
                .is_none_or(|end| i.opened_at_ms <= end.saturating_add(window_ms));
            if within {
                absorb(run, i);
                continue;
            }
        }
        latest.insert(i.deployment.clone(), runs.len());
        runs.push(Run {
            key_slots: vec![i.key_slot.clone()],
            incident: i,
            episodes: 1,
        });
    }
    runs.sort_by_key(|r| {
        (
            r.incident.closed_at_ms.is_some(),
            std::cmp::Reverse(r.incident.opened_at_ms),
        )
    });
    runs
}

/// Adds a later episode to a run of the same deployment.
fn absorb(run: &mut Run, episode: Incident) {
    let first = &mut run.incident;
    first.closed_at_ms = match (first.closed_at_ms, episode.closed_at_ms) {
        (Some(a), Some(b)) => Some(a.max(b)),
        _ => None,
    };
    first.trips += episode.trips;
    run.episodes += 1;
    if !run.key_slots.contains(&episode.key_slot) {
        run.key_slots.push(episode.key_slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60_000;

    fn incident(deployment: &str, slot: usize, opened: u64, closed: Option<u64>) -> Incident {
        Incident {
            deployment: deployment.to_owned(),
            key_slot: format!("{deployment}#{slot}"),
            opened_at_ms: opened,
            closed_at_ms: closed,
            reason: format!("reason at {opened}"),
            trips: 1,
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
        let merged = merge(list, Duration::from_secs(600));
        assert_eq!(merged.len(), 2, "{merged:#?}");
        let late = &merged[0];
        assert_eq!(late.incident.opened_at_ms, 45 * MIN);
        assert_eq!(late.episodes, 1);
        let run = &merged[1];
        assert_eq!(run.episodes, 3);
        assert_eq!(run.incident.trips, 3);
        assert_eq!(run.incident.opened_at_ms, 10 * MIN);
        assert_eq!(run.incident.closed_at_ms, Some(12 * MIN + 20_000));
        assert_eq!(
            run.incident.reason,
            format!("reason at {}", 10 * MIN),
            "the first's"
        );
        assert_eq!(run.key_slots, ["d0#0", "d0#1"]);
    }

    #[test]
    fn an_episode_still_open_keeps_the_run_open() {
        let list = vec![
            incident("d0", 0, 10 * MIN, Some(11 * MIN)),
            incident("d0", 0, 15 * MIN, None),
        ];
        let merged = merge(list, Duration::from_secs(600));
        assert_eq!(merged.len(), 1);
        assert_eq!(merged[0].incident.closed_at_ms, None);
        assert_eq!(merged[0].incident.opened_at_ms, 10 * MIN);
        assert_eq!(merged[0].episodes, 2);
    }

    #[test]
    fn other_deployments_and_a_zero_window_stay_apart() {
        let list = vec![
            incident("d0", 0, 10 * MIN, Some(11 * MIN)),
            incident("d1", 0, 10 * MIN + 1, Some(11 * MIN)),
            incident("d0", 0, 11 * MIN + 1, Some(12 * MIN)),
        ];
        assert_eq!(merge(list.clone(), Duration::ZERO).len(), 3);
        let merged = merge(list, Duration::from_secs(60));
        assert_eq!(merged.len(), 2);
        assert!(
            merged
                .iter()
                .any(|r| r.incident.deployment == "d1" && r.episodes == 1)
        );
        assert!(
            merged
                .iter()
                .any(|r| r.incident.deployment == "d0" && r.episodes == 2)
        );
    }

    #[test]
    fn open_incidents_come_first_then_newest() {
        let list = vec![
            incident("d0", 0, 10 * MIN, None),
            incident("d1", 0, 30 * MIN, Some(31 * MIN)),
            incident("d2", 0, 50 * MIN, Some(51 * MIN)),
        ];
        let merged = merge(list, Duration::from_secs(60));
        let order: Vec<&str> = merged
            .iter()
            .map(|r| r.incident.deployment.as_str())
            .collect();
        assert_eq!(order, ["d0", "d2", "d1"]);
    }
}
