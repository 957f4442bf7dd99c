//! Filters that take key slots out of a plan before any attempt, each for a reason the client can
//! be told: the deployment cannot express the request (no translation exists), lacks a capability
//! the request needs (tools, vision, …), or, for embeddings, is not interchangeable with the first
//! candidate (another model family or dimension would silently change the vectors).

use super::Plan;
use crate::config::Deployment;
use crate::providers::Endpoint;
use crate::translate::RequestView;
use nines_protocol::openai::RequestError;
use nines_protocol::unified::{Capabilities, Dialect};
use std::sync::Arc;

/// Why nothing in the plan can serve the request.
#[derive(Debug)]
pub enum Unservable {
    /// The request is invalid in its own dialect (found while translating it).
    Invalid(RequestError),
    /// No deployment supports these capabilities.
    Missing(Vec<&'static str>),
}

/// Drops slots that cannot serve this request. Same-dialect OpenAI plans skip the work: every
/// OpenAI-family deployment accepts the whole OpenAI surface, and the body goes through untouched.
pub fn serviceable(
    plan: &mut Plan,
    deployments: &[Arc<Deployment>],
    view: &RequestView,
) -> Result<(), Unservable> {
    let all_native = plan
        .slots
        .iter()
        .all(|s| !view.needs_translation(&deployments[s.deployment]));
    if view.endpoint == Endpoint::Embeddings {
        return embeddings(plan, deployments);
    }
    if all_native && view.ingress == Dialect::OpenAi {
        return Ok(());
    }
    let required = match view.chat() {
        Some(Ok(chat)) => chat.required_capabilities(),
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
        None => Capabilities::NONE,
    };
    let mut missing: Vec<&'static str> = Vec::new();
    plan.slots.retain(|s| {
        let gap = deployments[s.deployment].capabilities().missing(required);
        for name in &gap {
            if !missing.contains(name) {
                missing.push(name);
            }
        }
        gap.is_empty()
    });
    if plan.slots.is_empty() {
        Err(Unservable::Missing(missing))
    } else {
        Ok(())
    }
}

/// Embeddings fail over only between deployments of the first candidate's family.
fn embeddings(plan: &mut Plan, deployments: &[Arc<Deployment>]) -> Result<(), Unservable> {
    plan.slots.retain(|s| {
        deployments[s.deployment]
            .capabilities()
            .contains(Capabilities::EMBEDDINGS)
    });
    let Some(first) = plan.slots.first() else {
        return Err(Unservable::Missing(vec!["embeddings"]));
    };
    let family = deployments[first.deployment].embedding_family().to_owned();
    plan.slots
        .retain(|s| deployments[s.deployment].embedding_family() == family);
    Ok(())
}
