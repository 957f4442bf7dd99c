//! The headroom verdict: given a route's sustainable rate with all its replicas and the expected
//! peak, does the route still meet its SLO when any one replica is lost, and how many replicas
//! does that take?
//!
//! Replicas are taken as alike (the capacity search reports how the served requests were shared
//! between them, so an uneven share is visible): each carries `sustainable ÷ replicas`, and losing
//! one leaves `(replicas − 1) ×` that. A route needs enough replicas to carry the peak, plus one
//! to lose, and never fewer than two.

use serde::Serialize;

/// What the verdict says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Call {
    /// The peak fits with any one replica lost.
    Headroom,
    /// The peak fits with every replica, not with one lost.
    NoHeadroom,
    /// The peak does not fit even with every replica.
    OverCapacity,
    /// No peak was given, or no step met the SLO.
    Unknown,
}

/// The verdict for one route.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Verdict {
    pub call: Call,
    pub sustainable_rps: Option<f64>,
    pub replicas: u32,
    pub per_replica_rps: Option<f64>,
    pub peak_rps: Option<f64>,
    /// The rate left with one replica lost.
    pub one_lost_rps: Option<f64>,
    /// `one_lost ÷ peak − 1`: how much more than the peak the route carries with one lost.
    pub headroom: Option<f64>,
    /// Replicas that carry the peak with one lost (at least 2).
    pub replicas_needed: Option<u32>,
    /// The verdict in one sentence.
    pub text: String,
}

impl Verdict {
    pub fn judge(
        route: &str,
        sustainable: Option<f64>,
        replicas: u32,
        peak: Option<f64>,
    ) -> Verdict {
        let replicas = replicas.max(1);
        let per_replica = sustainable.map(|s| s / f64::from(replicas));
        let one_lost = per_replica.map(|c| c * f64::from(replicas - 1));
        let needed = match (peak, per_replica) {
            (Some(peak), Some(c)) if c > 0.0 => {
                let carry = (peak / c).ceil();
                Some(if carry.is_finite() && carry < f64::from(u32::MAX - 1) {
                    (carry as u32 + 1).max(2)
                } else {
                    u32::MAX
                })
            }
            _ => None,
        };
        let call = match (peak, sustainable, one_lost) {
            (Some(peak), Some(s), Some(lost)) if s > 0.0 => {
                if peak > s {
                    Call::OverCapacity
                } else if peak > lost {
                    Call::NoHeadroom
                } else {
                    Call::Headroom
                }
            }
            _ => Call::Unknown,
        };
        let headroom = match (peak, one_lost) {
            (Some(peak), Some(lost)) if peak > 0.0 => Some(lost / peak - 1.0),
            _ => None,
        };
        let text = sentence(route, call, sustainable, replicas, peak, one_lost, needed);
        Verdict {
            call,
            sustainable_rps: sustainable,
            replicas,
            per_replica_rps: per_replica,
            peak_rps: peak,
            one_lost_rps: one_lost,
            headroom,
            replicas_needed: needed,
            text,
        }
    }
}

fn sentence(
    route: &str,
    call: Call,
    sustainable: Option<f64>,
    replicas: u32,
    peak: Option<f64>,
    one_lost: Option<f64>,
    needed: Option<u32>,
) -> String {
    let Some(s) = sustainable.filter(|s| *s > 0.0) else {
        return format!(
            "{route}: no rate met the SLO; it has no capacity to judge (look at the errors and the slowest step)."
        );
    };
    let plural = if replicas == 1 { "" } else { "s" };
    let capacity = format!(
        "{route}: sustainable {s:.1} req/s with {replicas} replica{plural} ({:.1} req/s each)",
        s / f64::from(replicas)
    );
    let Some(peak) = peak else {
        return format!("{capacity}; give --peak to judge the headroom.");
    };
    let lost = one_lost.unwrap_or(0.0);
    let needed = needed.map_or_else(|| "?".to_owned(), |n| n.to_string());
    match call {
        Call::Headroom => format!(
            "{capacity}. At the expected peak of {peak:.1} req/s it meets the SLO with any one replica lost ({lost:.1} req/s left): HEADROOM OK. Needs {needed} replicas ({needed}+ with headroom), has {replicas}."
        ),
        Call::NoHeadroom => format!(
            "{capacity}. At the expected peak of {peak:.1} req/s it meets the SLO only with every replica: one lost leaves {lost:.1} req/s. NO HEADROOM: run {needed} replicas ({needed}+ with headroom)."
        ),
        Call::OverCapacity => format!(
            "{capacity}. The expected peak of {peak:.1} req/s is more than it sustains with every replica: OVER CAPACITY. Run {needed} replicas ({needed}+ with headroom)."
        ),
        Call::Unknown => format!("{capacity}."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_call_and_the_replicas_needed() {
        let v = Verdict::judge("chat", Some(28.0), 2, Some(10.0));
        assert_eq!(v.call, Call::Headroom);
        assert_eq!(v.one_lost_rps, Some(14.0));
        assert_eq!(v.replicas_needed, Some(2));
        assert!(v.text.contains("HEADROOM OK"), "{}", v.text);

        let v = Verdict::judge("chat", Some(14.0), 2, Some(10.0));
        assert_eq!(v.call, Call::NoHeadroom);
        assert_eq!(v.replicas_needed, Some(3));

        let v = Verdict::judge("chat", Some(8.0), 2, Some(10.0));
        assert_eq!(v.call, Call::OverCapacity);
        assert_eq!(v.replicas_needed, Some(4));

        // One replica can never lose one.
        let v = Verdict::judge("chat", Some(100.0), 1, Some(10.0));
        assert_eq!(v.call, Call::NoHeadroom);
        assert_eq!(v.replicas_needed, Some(2));

        assert_eq!(
            Verdict::judge("chat", None, 2, Some(10.0)).call,
            Call::Unknown
        );
        assert_eq!(
            Verdict::judge("chat", Some(10.0), 2, None).call,
            Call::Unknown
        );
    }
}
