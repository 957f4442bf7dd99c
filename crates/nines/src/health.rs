//! `nines health`: one GET, exit 0 on a 2xx answer. A container's health check, where the image
//! has no shell and no curl.

use std::process::ExitCode;
use std::time::Duration;

/// GETs `url` within `timeout`; prints why on failure.
pub fn run(url: &str, timeout: Duration) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("nines health: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(check(url, timeout)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("nines health: {url}: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn check(url: &str, timeout: Duration) -> Result<(), String> {
    nines_gateway::providers::install_crypto_provider();
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
    let response = client.get(url).send().await.map_err(|e| {
        if e.is_timeout() {
            "no answer in time".to_owned()
        } else if e.is_connect() {
            "cannot connect".to_owned()
        } else {
            e.to_string()
        }
    })?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("status {status}"))
    }
}
