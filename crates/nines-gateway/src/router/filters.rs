//! Filters that take key slots out of a plan before any attempt, each for a reason the client can
//! be told: the deployment cannot express the request (no translation exists), lacks a capability
//! the request needs (tools, vision, …), or, for embeddings, is not interchangeable with the first
//! candidate (another model family or dimension would silently change the vectors), or, for
//! legacy completions and token counting, speaks a dialect without that endpoint.

use super::{Plan, Skipped};
use crate::config::Deployment;
use crate::providers::Endpoint;
use crate::translate::RequestView;
use nines_protocol::openai::RequestError;
use nines_protocol::unified::{Capabilities, ChatRequest, openai_only_params};
use std::sync::Arc;

/// Why nothing in the plan can serve the request.
#[derive(Debug)]
pub enum Unservable {
    /// The request is invalid in its own dialect (found while translating it).
    Invalid(RequestError),
    /// No deployment supports these capabilities.
    Missing(Vec<String>),
}

/// Drops slots that cannot serve this request. Same-dialect OpenAI plans skip the work when every
/// deployment accepts the whole OpenAI surface (the body goes through untouched); a named service
/// that documents a gap (`config/presets.rs`) makes the request be parsed and checked.
pub fn serviceable(
    plan: &mut Plan,
    deployments: &[Arc<Deployment>],
    view: &RequestView,
) -> Result<(), Unservable> {
    match view.endpoint {
        Endpoint::Embeddings => return embeddings(plan, deployments),
        Endpoint::Completions | Endpoint::CountTokens => {
            return with_endpoint(plan, deployments, view.endpoint);
        }
        Endpoint::ChatCompletions => {}
    }
    // Every deployment takes the client's bytes as they are, and none is to be checked: nothing
    // to parse (the OpenAI pass-through's fast path).
    let checked = |d: &Deployment| view.needs_translation(d) || d.checks_native_requests();
    if plan
        .slots
        .iter()
        .all(|s| !checked(&deployments[s.deployment]))
    {
        return Ok(());
    }
    let chat = match view.chat() {
        Some(Ok(chat)) => chat,
        Some(Err(e)) => {
            // Only deployments that take the client's bytes as they are can still serve it.
            let error = e.clone();
            plan.slots
                .retain(|s| !view.needs_translation(&deployments[s.deployment]));
            return if plan.slots.is_empty() {
                Err(Unservable::Invalid(error))
            } else {
                Ok(())
            };
        }
        None => return Ok(()),
    };
    let required = chat.required_capabilities();
    let mut missing: Vec<String> = Vec::new();
    let skipped = &mut plan.skipped;
    plan.slots.retain(|s| {
        let d = &deployments[s.deployment];
        let gap = if checked(d) {
            gap(view, chat, required, d)
        } else {
            Vec::new()
        };
        let serves = gap.is_empty();
        // The plan says why (once per deployment, not per key slot).
        if !serves && !skipped.iter().any(|k| k.deployment == s.deployment) {
            skipped.push(Skipped {
                deployment: s.deployment,
                why: format!("cannot take {}", gap.join(", ")),
            });
        }
        for name in gap {
            let name = match name {
                // Named by the fields the client sent.
                "openai_only_params" => format!(
                    "openai_only_params ({})",
                    openai_only_params(&chat.extra)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                other => other.to_owned(),
            };
            if !missing.contains(&name) {
                missing.push(name);
            }
        }
        serves
    });
    if plan.slots.is_empty() {
        Err(Unservable::Missing(missing))
    } else {
        Ok(())
    }
}

/// What `d` lacks to serve `chat` (whose needs are `required`), after removing what it may drop
/// (`drop_unsupported_params`).
fn gap(
    view: &RequestView,
    chat: &ChatRequest,
    required: Capabilities,
    d: &Deployment,
) -> Vec<&'static str> {
    let dropped = view.dropped_for(d);
    let required = if dropped.is_empty() {
        required
    } else {
        chat.without(dropped).0.required_capabilities()
    };
    // A final assistant message sent to a deployment of the client's own dialect goes as it is,
    // to be answered as that dialect answers it: no prefill is asked of it.
    let required = if view.needs_translation(d) {
        required
    } else {
        required.without(Capabilities::ASSISTANT_PREFILL)
    };
    d.capabilities().missing(required)
}

/// Legacy completions and token counting exist only in one dialect each
/// (`Endpoint::served_in`): other deployments are left out. Token counting with none left is
/// not an error: the gateway counts locally (`pipeline.rs`).
fn with_endpoint(
    plan: &mut Plan,
    deployments: &[Arc<Deployment>],
    endpoint: Endpoint,
) -> Result<(), Unservable> {
    plan.slots
        .retain(|s| endpoint.served_in(deployments[s.deployment].provider.dialect()));
    if plan.slots.is_empty() && endpoint == Endpoint::Completions {
        return Err(Unservable::Missing(vec!["completions".into()]));
    }
    Ok(())
}

/// Embeddings fail over only between deployments of the first candidate's family.
fn embeddings(plan: &mut Plan, deployments: &[Arc<Deployment>]) -> Result<(), Unservable> {
    plan.slots.retain(|s| {
        deployments[s.deployment]
            .capabilities()
            .contains(Capabilities::EMBEDDINGS)
    });
    let Some(first) = plan.slots.first() else {
        return Err(Unservable::Missing(vec!["embeddings".into()]));
    };
    let family = deployments[first.deployment].embedding_family().to_owned();
    plan.slots
        .retain(|s| deployments[s.deployment].embedding_family() == family);
    Ok(())
}
