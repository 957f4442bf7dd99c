//! The asynchronous jobs the mock remembers (Replicate predictions, Runway tasks): the most
//! recent ones by id, behind a short-lived lock.

use std::collections::VecDeque;
use std::sync::Mutex;

/// How many jobs of one kind are remembered; older ones are forgotten (a poll gets 404).
const JOB_LIMIT: usize = 256;

/// The last [`JOB_LIMIT`] jobs of one kind, oldest first.
pub(crate) struct Recent<T> {
    jobs: Mutex<VecDeque<(String, T)>>,
}

impl<T: Clone> Recent<T> {
    pub(crate) fn new() -> Self {
        Self {
            jobs: Mutex::new(VecDeque::new()),
        }
    }

    pub(crate) fn insert(&self, id: String, job: T) {
        let mut jobs = self.lock();
        if jobs.len() == JOB_LIMIT {
            jobs.pop_front();
        }
        jobs.push_back((id, job));
    }

    pub(crate) fn get(&self, id: &str) -> Option<T> {
        self.update(id, |job| job.clone())
    }

    /// Change job `id` in place; `None` if it is not (or no longer) known.
    pub(crate) fn update<R>(&self, id: &str, change: impl FnOnce(&mut T) -> R) -> Option<R> {
        let mut jobs = self.lock();
        jobs.iter_mut()
            .find(|(known, _)| known == id)
            .map(|(_, job)| change(job))
    }

    /// Forget job `id`; `false` if it was not known.
    pub(crate) fn remove(&self, id: &str) -> bool {
        let mut jobs = self.lock();
        let before = jobs.len();
        jobs.retain(|(known, _)| known != id);
        jobs.len() != before
    }

    pub(crate) fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(String, T)>> {
        self.jobs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_the_most_recent_jobs() {
        let recent = Recent::new();
        for n in 0..(JOB_LIMIT + 2) {
            recent.insert(n.to_string(), n);
        }
        assert_eq!(recent.get("0"), None);
        assert_eq!(recent.get("1"), None);
        assert_eq!(recent.get("2"), Some(2));
        assert_eq!(recent.update("2", |n| *n += 10), Some(()));
        assert_eq!(recent.get("2"), Some(12));
        assert!(recent.remove("2"));
        assert!(!recent.remove("2"));
        recent.clear();
        assert_eq!(recent.get("3"), None);
    }
}
