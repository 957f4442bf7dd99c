//! `nines status notice add|list|resolve`: operator notices on a running gateway's status page
//! (incident updates, scheduled maintenance), through its admin API (`/admin/status/notices`),
//! so every page shows them at once; with a `[store]` the gateway keeps them there, for every
//! replica and across restarts. Output is the API's JSON on stdout.

use clap::{Args, Subcommand};
use serde_json::{Value, json};
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum Status {
    /// Notices on the status page.
    #[command(subcommand)]
    Notice(Notice),
}

/// Where the gateway is.
#[derive(Args)]
pub struct Target {
    /// The running gateway (http://HOST:PORT).
    #[arg(
        long,
        env = "NINES_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    url: String,
    /// The gateway's admin key (`auth.admin_key`).
    #[arg(long, env = "NINES_ADMIN_KEY", hide_env_values = true, global = true)]
    admin_key: Option<String>,
}

#[derive(Subcommand)]
pub enum Notice {
    /// Post a notice; prints it (with its id).
    Add {
        /// incident (an update on an incident) or maintenance.
        #[arg(long, default_value = "incident")]
        kind: String,
        /// One line shown in bold.
        title: String,
        /// More words under the title.
        #[arg(long, default_value = "")]
        body: String,
        /// The models it concerns (comma-separated); default all.
        #[arg(long, value_delimiter = ',')]
        models: Vec<String>,
        /// Maintenance: when it starts (RFC 3339, e.g. 2026-12-08T22:00:00Z).
        #[arg(long)]
        starts_at: Option<String>,
        /// Maintenance: when it ends (RFC 3339).
        #[arg(long)]
        ends_at: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// List the notices of the last 7 days and those in force, newest first.
    List {
        #[command(flatten)]
        target: Target,
    },
    /// Resolve a notice by id (it leaves the top of the page and is listed as past).
    Resolve {
        id: String,
        #[command(flatten)]
        target: Target,
    },
}

pub fn run(command: Status) -> ExitCode {
    let Status::Notice(notice) = command;
    crate::admin_http::print_outcome(act(notice))
}

async fn act(notice: Notice) -> Result<String, String> {
    use reqwest::Method;
    let (target, method, path, body): (Target, Method, String, Option<Value>) = match notice {
        Notice::Add {
            kind,
            title,
            body,
            models,
            starts_at,
            ends_at,
            target,
        } => (
            target,
            Method::POST,
            "/admin/status/notices".into(),
            Some(json!({
                "kind": kind, "title": title, "body": body, "models": models,
                "starts_at": starts_at, "ends_at": ends_at,
            })),
        ),
        Notice::List { target } => (target, Method::GET, "/admin/status/notices".into(), None),
        Notice::Resolve { id, target } => {
            if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(format!("'{id}' is not a notice id (ntc_…)"));
            }
            (
                target,
                Method::POST,
                format!("/admin/status/notices/{id}/resolve"),
                None,
            )
        }
    };
    let key = target.admin_key.as_deref().ok_or(
        "--admin-key (or NINES_ADMIN_KEY) is required: notices are posted through the admin API",
    )?;
    crate::admin_http::call(&target.url, key, method, &path, body.as_ref()).await
}
