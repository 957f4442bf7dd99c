//! One Runway task as the mock remembers it, and the task object a poll answers.
//!
//! It lives apart from the handlers in `runway.rs` because `state.rs` stores it: the handlers
//! depend on the state, so the state cannot depend on them.

use serde_json::{Value, json};

/// A fixed creation time: content must not depend on the wall clock.
const CREATED_AT: &str = "2023-11-14T22:13:20.000Z";

/// How a task ends.
#[derive(Clone, Debug)]
pub(crate) enum End {
    Succeeded,
    Failed {
        failure: &'static str,
        code: &'static str,
    },
    Cancelled,
}

/// One remembered task.
#[derive(Clone, Debug)]
pub(crate) struct Task {
    pub(crate) id: String,
    pub(crate) end: End,
    /// Polls so far; the first sees the task running, later ones its end.
    pub(crate) polls: u32,
}

impl Task {
    /// The task as the poll numbered `poll` (1-based) sees it.
    pub(crate) fn json(&self, poll: u32) -> Value {
        let mut v = json!({"id": self.id, "createdAt": CREATED_AT});
        if poll <= 1 {
            v["status"] = "RUNNING".into();
            v["progress"] = 0.5.into();
            return v;
        }
        match &self.end {
            End::Succeeded => {
                v["status"] = "SUCCEEDED".into();
                v["output"] = json!([format!(
                    "https://mock.runway.invalid/videos/{}.mp4",
                    self.id
                )]);
            }
            End::Failed { failure, code } => {
                v["status"] = "FAILED".into();
                v["failure"] = (*failure).into();
                v["failureCode"] = (*code).into();
            }
            End::Cancelled => v["status"] = "CANCELLED".into(),
        }
        v
    }
}
