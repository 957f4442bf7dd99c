//! Responses API conversations, kept so a request can name its predecessor with
//! `previous_response_id` instead of sending the whole conversation again.
//!
//! nines is stateless without a store: then `previous_response_id` is refused (a failover could
//! send the next turn to a deployment that never saw the previous one, so nines cannot leave the
//! state to the upstreams). With `[store]`, every response nines delivers on `/v1/responses` is
//! kept as the input items that continue it (the conversation it answered, then its own output
//! items), under the id the client received, readable only by the key that made it, for
//! `store.keep_responses` (30 days by default). A request naming it gets those items put before
//! its own `input` and is then an ordinary stateless request, native or translated, which is
//! what lets it fail over like any other.
//!
//! The store write happens off the request path (spawned); the last conversations kept are also
//! held in memory for a moment, so a client that sends the next turn as soon as it has read a
//! response finds it even before that write landed. The store keeps every copy that must
//! survive the process; the memory is only a read-your-writes shortcut.

use crate::store::{Store, StoreError};
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How many recently kept conversations are held in memory.
const RECENT: usize = 1024;

/// The owner of conversations made without auth.
pub const ANONYMOUS: &str = "anonymous";

pub struct Conversations {
    store: Store,
    recent: Mutex<Recent>,
}

#[derive(Default)]
struct Recent {
    by_id: HashMap<Arc<str>, Kept>,
    order: VecDeque<Arc<str>>,
}

struct Kept {
    owner: Arc<str>,
    items: Arc<str>,
    expires_at: i64,
}

/// Why a previous response cannot be continued.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// Not kept, expired, or kept for another key (indistinguishable on purpose).
    #[error("Previous response with id '{0}' not found.")]
    NotFound(String),
    #[error("the conversation store is unavailable: {0}")]
    Store(#[from] StoreError),
}

impl Conversations {
    pub fn new(store: Store) -> Self {
        Conversations {
            store,
            recent: Mutex::new(Recent::default()),
        }
    }

    /// The input items that continue response `id`, if `owner` may read it.
    pub async fn items(&self, id: &str, owner: &str) -> Result<Vec<Value>, LookupError> {
        let now = now();
        let recent = {
            let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            recent
                .by_id
                .get(id)
                .filter(|k| &*k.owner == owner && k.expires_at > now)
                .map(|k| Arc::clone(&k.items))
        };
        let items = match recent {
            Some(items) => items.to_string(),
            None => self
                .store
                .conversation(id, owner, now)
                .await?
                .ok_or_else(|| LookupError::NotFound(id.to_owned()))?,
        };
        serde_json::from_str(&items).map_err(|e| {
            LookupError::Store(StoreError::Invalid(format!("a kept conversation: {e}")))
        })
    }

    /// Keeps the conversation response `id` ends (`input`, then `output`) for `keep`.
    pub fn keep(
        self: &Arc<Self>,
        id: &str,
        owner: &str,
        input: &[Value],
        output: &[Value],
        keep: Duration,
    ) {
        let items: Vec<&Value> = input.iter().chain(output).collect();
        let Ok(items) = serde_json::to_string(&items) else {
            return;
        };
        let now = now();
        let expires_at = now.saturating_add(i64::try_from(keep.as_secs()).unwrap_or(i64::MAX));
        let id: Arc<str> = Arc::from(id);
        let owner: Arc<str> = Arc::from(owner);
        let items: Arc<str> = Arc::from(items);
        {
            let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            let kept = Kept {
                owner: Arc::clone(&owner),
                items: Arc::clone(&items),
                expires_at,
            };
            if recent.by_id.insert(Arc::clone(&id), kept).is_none() {
                recent.order.push_back(Arc::clone(&id));
            }
            while recent.order.len() > RECENT {
                if let Some(oldest) = recent.order.pop_front() {
                    recent.by_id.remove(&oldest);
                }
            }
        }
        let this = Arc::clone(self);
        tokio::spawn(async move {
            if let Err(e) = this
                .store
                .keep_conversation(&id, &owner, &items, expires_at, now)
                .await
            {
                tracing::warn!(error = %e, "could not keep a Responses conversation");
            }
        });
    }
}

fn now() -> i64 {
    i64::try_from(crate::clock::unix_secs()).unwrap_or(i64::MAX)
}

/// What keeps one response for the next turn, once it is known: the conversation it answers
/// and where and how long to keep it.
pub struct Keep {
    pub conversations: Arc<Conversations>,
    pub owner: String,
    /// The request's input items, the previous conversation's first.
    pub input: Vec<Value>,
    pub keep: Duration,
}

impl Keep {
    /// Keeps `response` (a `response` object, or a stream event carrying one in `response`)
    /// when it completed (`completed`, or `incomplete`: cut short but whole).
    pub fn response(self, response: &[u8]) {
        let Ok(mut value) = serde_json::from_slice::<Value>(response) else {
            return;
        };
        if let Some(inner) = value.get_mut("response").map(Value::take) {
            value = inner;
        }
        let finished = matches!(
            value.get("status").and_then(Value::as_str),
            Some("completed" | "incomplete")
        );
        let Some(id) = value.get("id").and_then(Value::as_str).filter(|_| finished) else {
            return;
        };
        self.conversations.keep(
            id,
            &self.owner,
            &self.input,
            &output_items(&value),
            self.keep,
        );
    }
}

/// `input` as a list of items (a string is one user message).
pub fn input_items(input: &Value) -> Vec<Value> {
    match input {
        Value::String(text) => vec![serde_json::json!({"role": "user", "content": text})],
        Value::Array(items) => items.clone(),
        _ => Vec::new(),
    }
}

/// A response's output items as input items for the next turn, as the SDKs send them back,
/// without the ids and statuses of messages and function calls: the next turn may be served by
/// another provider, which must not be asked to look up an id it never issued (the `call_id`
/// that pairs a call with its output stays).
pub fn output_items(response: &Value) -> Vec<Value> {
    let mut items = response
        .get("output")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for item in &mut items {
        let portable = matches!(
            item.get("type").and_then(Value::as_str),
            Some("message" | "function_call")
        );
        if let (true, Some(fields)) = (portable, item.as_object_mut()) {
            fields.remove("id");
            fields.remove("status");
        }
    }
    items
}
