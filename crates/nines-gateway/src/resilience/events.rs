//! Breaker transitions, broadcast to whoever keeps track of them (incidents in the ledger, alerts,
//! metrics). Sending never blocks the request path: a slow subscriber loses old events
//! (`broadcast` semantics) rather than slowing a breaker down.

use crate::clock::Clock;
use tokio::sync::broadcast;

#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    /// Tripped; requests skip the slot until `until_ms` (Unix ms).
    Opened { until_ms: u64, reason: String },
    /// The cooldown is over; one probe request is admitted.
    HalfOpen,
    /// A probe succeeded; the slot serves again.
    Closed,
}

impl Transition {
    pub fn as_str(&self) -> &'static str {
        match self {
            Transition::Opened { .. } => "opened",
            Transition::HalfOpen => "half_open",
            Transition::Closed => "closed",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct BreakerEvent {
    /// `deployment#index`.
    pub key_slot: String,
    pub deployment: String,
    pub transition: Transition,
    /// Unix ms.
    pub at_ms: u64,
}

/// Where breakers report; cheap to clone into every breaker.
#[derive(Debug, Clone)]
pub struct EventSink {
    tx: broadcast::Sender<BreakerEvent>,
    clock: Clock,
}

impl EventSink {
    pub fn new(clock: Clock) -> EventSink {
        let (tx, _) = broadcast::channel(1024);
        EventSink { tx, clock }
    }

    pub fn clock(&self) -> Clock {
        self.clock
    }

    pub fn subscribe(&self) -> broadcast::Receiver<BreakerEvent> {
        self.tx.subscribe()
    }

    pub fn emit(&self, key_slot: &str, transition: Transition) {
        let deployment = key_slot
            .rsplit_once('#')
            .map_or(key_slot, |(d, _)| d)
            .to_owned();
        // No subscriber is fine: nothing wants to know.
        let _ = self.tx.send(BreakerEvent {
            key_slot: key_slot.to_owned(),
            deployment,
            transition,
            at_ms: self.clock.now_ms(),
        });
    }
}
