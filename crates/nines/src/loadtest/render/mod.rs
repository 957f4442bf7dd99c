//! What a run reports, in each format: text for a terminal, JSON for scripts, Markdown for a
//! pull request or a runbook, and (for a capacity search) a self-contained HTML page.

mod html;
mod markdown;
mod text;

use serde::Serialize;

use super::capacity::{RouteCapacity, Search};
use super::scrape::Overhead;
use super::stats::Summary;

pub use html::capacity_page;
pub use markdown::{capacity_markdown, run_markdown};
pub use text::run_text;

/// One run: where it went, what was sent, what came back.
#[derive(Serialize)]
pub struct RunReport {
    pub url: String,
    pub mix: String,
    pub load: String,
    pub summary: Summary,
    /// The gateway's own time (`nines_overhead_seconds`), when the target is nines.
    pub overhead: Option<Overhead>,
}

/// A capacity search over one or more routes.
#[derive(Serialize)]
pub struct CapacityReport {
    pub url: String,
    pub mix: String,
    pub search: Search,
    pub routes: Vec<RouteCapacity>,
}

/// Milliseconds with a precision that suits their size.
pub(crate) fn ms(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0} ms")
    } else if value >= 1.0 {
        format!("{value:.1} ms")
    } else {
        format!("{value:.3} ms")
    }
}
