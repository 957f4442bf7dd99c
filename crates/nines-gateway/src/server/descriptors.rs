//! File descriptors: each client connection needs one, and usually one more for its upstream
//! request. At the common default soft limit of 1,024, a flood of idle sockets would otherwise
//! use them all: `accept` then fails, nothing is answered, and connections pile up unseen in
//! the kernel's queue. So at start the soft limit is raised to the hard limit, and connections
//! are capped where the limit can still hold them, like HAProxy's maxconn derived from
//! `ulimit -n`.

/// Descriptors kept for everything that is not a connection: the listener, the store's and
/// Redis's pools, log and data files, the config watch.
pub const RESERVED: u64 = 64;

/// The soft limit, raised to the hard limit when it is lower; `None` when it cannot be read.
pub fn raise_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => Some(limit),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read or raise the file-descriptor limit");
            None
        }
    }
}

/// The most connections `limit` descriptors can hold: two each (the client's and its upstream
/// request's), after the reserve.
pub fn connections_for(limit: u64) -> usize {
    usize::try_from(limit.saturating_sub(RESERVED) / 2).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::connections_for;

    #[test]
    fn connections_leave_a_descriptor_for_their_upstream_and_the_reserve() {
        assert_eq!(connections_for(1024), 480);
        assert_eq!(connections_for(65_536), 32_736);
        assert_eq!(connections_for(10), 0);
    }
}
