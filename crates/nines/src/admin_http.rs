//! Calls to a running gateway's admin API (`/admin/...`) for the commands that act through one
//! (`nines report sla --url`, `nines status notice`): the admin key as a bearer token, a
//! timeout, and the gateway's own error message on a refusal.

use std::process::ExitCode;
use std::time::Duration;

/// Runs a command's work on a one-thread runtime: its text to stdout (with a final newline),
/// or its error to stderr with a non-zero exit.
pub fn print_outcome(work: impl Future<Output = Result<String, String>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("nines: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(work) {
        Ok(text) => {
            print!("{text}");
            if !text.ends_with('\n') {
                println!();
            }
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("nines: {message}");
            ExitCode::FAILURE
        }
    }
}

/// `method path` on the gateway at `url` with `body` (JSON) if any; the answer's body on a 2xx,
/// else an error naming the status and the gateway's message.
pub async fn call(
    url: &str,
    key: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<&serde_json::Value>,
) -> Result<String, String> {
    let base = url.trim_end_matches('/');
    if !(base.starts_with("http://") || base.starts_with("https://")) {
        return Err(format!("--url '{url}' must start with http:// or https://"));
    }
    nines_gateway::providers::install_crypto_provider();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
    let mut request = client
        .request(method, format!("{base}{path}"))
        .bearer_auth(key);
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request
        .send()
        .await
        .map_err(|e| format!("cannot reach the gateway at {base}: {}", causes(&e)))?;
    let status = response.status();
    let body = response
        .text()
        .await
        .map_err(|e| format!("the gateway at {base} broke off its answer: {}", causes(&e)))?;
    if !status.is_success() {
        let message = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
            .unwrap_or(body);
        return Err(format!("the gateway answered {status}: {message}"));
    }
    Ok(body)
}

/// An error with its causes (reqwest's own message hides "connection refused").
fn causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}
