//! What a relay reads: one upstream stream ([`Segment`]: the first, or a continuation of it)
//! with its key slot.

use crate::providers::ByteStream;
use crate::resilience::OpenSlot;
use bytes::Bytes;
use std::time::Duration;

/// One upstream stream to relay.
pub struct Segment {
    /// The bytes read so far (at least one complete event).
    pub head: Bytes,
    pub rest: ByteStream,
    /// The deployment's idle timeout.
    pub idle: Duration,
    /// Its key slot, settled once when this stream ends: finished, broken, or the client left.
    pub slot: OpenSlot,
}
