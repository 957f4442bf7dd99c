//! What this replica knows of virtual keys, by the hash of each: grants the store returned
//! (positive) and keys it said it does not know (negative).
//!
//! - A grant is *fresh* for `auth.cache_ttl`, then read again from the store; while the store
//!   cannot answer it stays usable up to `auth.stale_ttl` (the lookup says so, so it can be
//!   counted). Past that it is as good as absent.
//! - An unknown key is remembered for `auth.negative_ttl`, in a map of at most
//!   `auth.negative_entries` (oldest forgotten first), so a client hammering with a wrong key
//!   costs the store one query per TTL, not one per request.
//! - [`GrantCache::clear`] forgets both (an admin change here, or one announced by another
//!   replica).

use super::Identity;
use crate::store::KeyGrant;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Grants kept at most; beyond this the map is emptied (and refilled by lookups) rather than
/// growing without bound.
const MAX_GRANTS: usize = 100_000;

/// A cached grant with the identity built from it.
#[derive(Clone)]
pub struct Grant {
    pub grant: Arc<KeyGrant>,
    pub identity: Arc<Identity>,
}

/// What the cache says of one key hash.
pub enum Known {
    /// Read from the store within `cache_ttl`.
    Fresh(Grant),
    /// Older than `cache_ttl`, younger than `stale_ttl`: usable only if the store cannot answer.
    Stale(Grant),
    /// The store said recently that no such key exists.
    Unknown,
    /// Nothing usable.
    Nothing,
}

struct Entry {
    grant: Grant,
    fetched: Instant,
}

#[derive(Default)]
struct Maps {
    grants: HashMap<String, Entry>,
    unknown: HashMap<String, Instant>,
    /// Insertion order of `unknown`, to forget the oldest first.
    unknown_order: VecDeque<String>,
}

#[derive(Default)]
pub struct GrantCache(Mutex<Maps>);

/// The TTLs of one lookup (from the configuration in force).
#[derive(Debug, Clone, Copy)]
pub struct Ttls {
    pub fresh: Duration,
    pub stale: Duration,
    pub negative: Duration,
    pub negative_entries: usize,
}

impl GrantCache {
    fn maps(&self) -> std::sync::MutexGuard<'_, Maps> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, hash: &str, ttls: Ttls) -> Known {
        let maps = self.maps();
        if let Some(e) = maps.grants.get(hash) {
            let age = e.fetched.elapsed();
            if age < ttls.fresh {
                return Known::Fresh(e.grant.clone());
            }
            if age < ttls.fresh.saturating_add(ttls.stale) {
                return Known::Stale(e.grant.clone());
            }
        }
        match maps.unknown.get(hash) {
            Some(at) if at.elapsed() < ttls.negative => Known::Unknown,
            _ => Known::Nothing,
        }
    }

    pub fn insert(&self, hash: String, grant: Grant) {
        let mut maps = self.maps();
        if maps.grants.len() >= MAX_GRANTS {
            maps.grants.clear();
        }
        maps.unknown.remove(&hash);
        maps.grants.insert(
            hash,
            Entry {
                grant,
                fetched: Instant::now(),
            },
        );
    }

    pub fn insert_unknown(&self, hash: String, ttls: Ttls) {
        if ttls.negative_entries == 0 || ttls.negative.is_zero() {
            return;
        }
        let mut maps = self.maps();
        while maps.unknown.len() >= ttls.negative_entries {
            let Some(oldest) = maps.unknown_order.pop_front() else {
                maps.unknown.clear();
                break;
            };
            maps.unknown.remove(&oldest);
        }
        if maps.unknown.insert(hash.clone(), Instant::now()).is_none() {
            maps.unknown_order.push_back(hash);
        }
    }

    pub fn clear(&self) {
        let mut maps = self.maps();
        maps.grants.clear();
        maps.unknown.clear();
        maps.unknown_order.clear();
    }

    /// Keys remembered as unknown now.
    pub fn unknown_len(&self) -> usize {
        self.maps().unknown.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTLS: Ttls = Ttls {
        fresh: Duration::from_secs(10),
        stale: Duration::from_secs(3600),
        negative: Duration::from_secs(5),
        negative_entries: 3,
    };

    #[tokio::test(start_paused = true)]
    async fn unknown_keys_are_bounded_and_expire() {
        let cache = GrantCache::default();
        for i in 0..5 {
            cache.insert_unknown(format!("h{i}"), TTLS);
        }
        assert_eq!(cache.unknown_len(), 3);
        // The two oldest were forgotten first.
        assert!(matches!(cache.get("h0", TTLS), Known::Nothing));
        assert!(matches!(cache.get("h4", TTLS), Known::Unknown));
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(matches!(cache.get("h4", TTLS), Known::Nothing));
    }
}
