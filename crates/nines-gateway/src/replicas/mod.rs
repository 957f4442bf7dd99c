//! What replicas share through Redis (`[redis]`): the connection itself, whatever Redis's shape
//! (`link`: one server, TLS, Sentinel, Cluster), breaker state and the leases that make one
//! replica the half-open prober of a key slot and the active prober of a deployment
//! (`breakers`, `lease`). Limits use the same link (`crate::limits::redis`).
//!
//! Every key lives under the hash tag `{prefix}`, so in a Redis Cluster every key is in one slot
//! and every script may touch several. Without Redis, or while it is down, each replica decides
//! alone: `crate::resilience::shared::Coordination` says which.

pub mod breakers;
pub mod lease;
pub mod link;

pub use breakers::{SharedStats, Source, View};
pub use link::RedisLink;
