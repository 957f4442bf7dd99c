//! The official OpenAI Python SDK against nines (in front of chaos mocks, first deployment down).
//!
//! The SDK is installed by the test itself into `target/pyenv` from PyPI (pinned in
//! `tests/sdk/requirements.txt`), so `cargo test` needs nothing preinstalled but python3. Where
//! neither the venv nor PyPI is reachable the test says so and skips — unless `CI` is set, where
//! a skip would hide a missing install step, so it fails instead.

use crate::process::{Nines, command, mock};
use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A python with the SDK requirements installed, or why there is none. Tests in this process
/// share one setup (a lock); other processes race only on the final rename, which is atomic.
fn python_with_sdks() -> Result<PathBuf, String> {
    static SETUP: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = SETUP.lock().unwrap_or_else(|p| p.into_inner());
    setup_python()
}

fn setup_python() -> Result<PathBuf, String> {
    if let Ok(p) = std::env::var("NINES_PYTHON") {
        return Ok(PathBuf::from(p));
    }
    let requirements = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/requirements.txt");
    let wanted = std::fs::read_to_string(&requirements).map_err(|e| e.to_string())?;
    let venv = workspace().join("target/pyenv");
    let stamp = venv.join("requirements.txt");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
        return Ok(venv.join("bin/python"));
    }
    // Build in a private directory and rename into place, so concurrent test processes never see
    // a half-installed venv.
    static STAGING: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = STAGING.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let staging = workspace().join(format!("target/pyenv-staging-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    let run = |cmd: &mut std::process::Command| -> Result<(), String> {
        let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{cmd:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    };
    run(std::process::Command::new("python3")
        .args(["-m", "venv"])
        .arg(&staging))?;
    run(std::process::Command::new(staging.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
        .arg(&requirements))?;
    std::fs::write(staging.join("requirements.txt"), &wanted).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_dir_all(&venv);
    if std::fs::rename(&staging, &venv).is_err() {
        let _ = std::fs::remove_dir_all(&staging); // another process won the race
    }
    // The venv's scripts embed its path, so use the python of the final location.
    Ok(venv.join("bin/python"))
}

/// The python to run SDK scripts with; `None` (after saying why) when it cannot be set up outside
/// CI. Under CI a missing SDK is a failure: a skip there would hide a broken install step.
async fn python_or_skip(test: &str) -> Option<PathBuf> {
    match tokio::task::spawn_blocking(python_with_sdks).await.unwrap() {
        Ok(p) => Some(p),
        Err(why) if std::env::var_os("CI").is_none() => {
            eprintln!("SKIPPED {test}: cannot set up the SDKs ({why})");
            None
        }
        Err(why) => panic!("cannot set up the SDKs under CI: {why}"),
    }
}

#[tokio::test]
async fn official_openai_python_sdk_works_unchanged() {
    let Some(python) = python_or_skip("official_openai_python_sdk_works_unchanged").await else {
        return;
    };
    let down = mock("mock0").await;
    down.set_fault(Some(
        serde_json::from_value(serde_json::json!({"status": 503})).unwrap(),
    ));
    let up = mock("mock1").await;
    let dir = crate::serve::tempdir();
    let path = dir.join("sdk.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\n[[deployments]]\nname = \"d0\"\nprovider = \"openai-compatible\"\nmodel = \"m\"\nbase_url = \"{}\"\n\n[[deployments]]\nname = \"d1\"\nprovider = \"openai-compatible\"\nmodel = \"m\"\nbase_url = \"{}\"\n\n[[models]]\nname = \"chat\"\ndeployments = [\"d0\", \"d1\"]\n\n[[models]]\nname = \"embed\"\ndeployments = [\"d0\", \"d1\"]\n",
            down.base_url(),
            up.base_url()
        ),
    )
    .unwrap();
    let mut nines = Nines::spawn(command(&["serve", "--config", path.to_str().unwrap()]));
    let base = nines.base().await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/openai_sdk.py");
    let output = tokio::process::Command::new(&python)
        .arg(&script)
        .arg(format!("{base}/v1"))
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "SDK script failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("openai sdk: ok"), "{stdout}");
    // Every SDK call that reached the route hit the down deployment first, then the fallback.
    assert!(down.hits("/v1/chat/completions") >= 4);
    assert!(up.hits("/v1/chat/completions") >= 4);
    nines.terminate().await;
}

#[tokio::test]
async fn anthropic_sdk_in_openai_out_and_openai_sdk_in_anthropic_out() {
    let Some(python) =
        python_or_skip("anthropic_sdk_in_openai_out_and_openai_sdk_in_anthropic_out").await
    else {
        return;
    };
    let openai_up = mock("openai-upstream").await;
    let anthropic_up = mock("anthropic-upstream").await;
    let down = mock("down").await;
    down.set_fault(Some(
        serde_json::from_value(serde_json::json!({"status": 503})).unwrap(),
    ));
    let dir = crate::serve::tempdir();
    let path = dir.join("sdk2.toml");
    std::fs::write(
        &path,
        format!(
            r#"[server]
listen = "127.0.0.1:0"

[[deployments]]
name = "oai"
provider = "openai-compatible"
model = "m"
base_url = "{}"

[[deployments]]
name = "oai-down"
provider = "openai-compatible"
model = "m"
base_url = "{}"

[[deployments]]
name = "claude"
provider = "anthropic"
model = "claude-m"
base_url = "{}"
api_keys = ["anthropic-test-key"]

[[models]]
name = "to-openai"
deployments = ["oai"]

[[models]]
name = "to-anthropic"
deployments = ["oai-down", "claude"]
"#,
            openai_up.base_url(),
            down.base_url(),
            anthropic_up.base_url()
        ),
    )
    .unwrap();
    let mut nines = Nines::spawn(command(&["serve", "--config", path.to_str().unwrap()]));
    let base = nines.base().await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/anthropic_sdk.py");
    let output = tokio::process::Command::new(&python)
        .arg(&script)
        .arg(&base)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "SDK script failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("anthropic sdk: ok"), "{stdout}");
    assert!(openai_up.hits("/v1/chat/completions") >= 2);
    assert!(anthropic_up.hits("/v1/messages") >= 2);
    // One count forwarded (to-anthropic), one made by nines (to-openai).
    assert_eq!(anthropic_up.hits("/v1/messages/count_tokens"), 1);
    assert_eq!(openai_up.hits("/v1/completions"), 1);
    nines.terminate().await;
}

/// `client.responses.create` (plain, streamed, the SDK's stream helper, a function call round
/// trip, `text.format`, the refusals) through an Anthropic upstream (behind a chat-only server
/// that is down, so the first attempt fails over) and through a Gemini upstream.
#[tokio::test]
async fn openai_sdk_responses_through_anthropic_and_gemini() {
    let Some(python) = python_or_skip("openai_sdk_responses_through_anthropic_and_gemini").await
    else {
        return;
    };
    let down = mock("down").await;
    down.set_fault(Some(
        serde_json::from_value(serde_json::json!({"status": 503})).unwrap(),
    ));
    let claude = mock("claude-upstream").await;
    let gemini = mock("gemini-upstream").await;
    let gemini_root = gemini.base_url().trim_end_matches("/v1").to_owned();
    let dir = crate::serve::tempdir();
    let path = dir.join("responses.toml");
    std::fs::write(
        &path,
        format!(
            r#"[server]
listen = "127.0.0.1:0"

[resilience.probes]
enabled = false

[[deployments]]
name = "compat-down"
provider = "openai-compatible"
model = "m"
base_url = "{}"

[[deployments]]
name = "claude"
provider = "anthropic"
model = "claude-m"
base_url = "{}"
api_keys = ["anthropic-test-key"]

[[deployments]]
name = "gemini"
provider = "gemini"
model = "gemini-m"
base_url = "{gemini_root}"
api_keys = ["gemini-test-key"]

[[models]]
name = "via-anthropic"
deployments = ["compat-down", "claude"]

[[models]]
name = "via-gemini"
deployments = ["gemini"]
"#,
            down.base_url(),
            claude.base_url(),
        ),
    )
    .unwrap();
    let mut nines = Nines::spawn(command(&["serve", "--config", path.to_str().unwrap()]));
    let base = nines.base().await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/responses_sdk.py");
    for args in [
        vec!["via-anthropic", "claude-upstream"],
        vec!["via-gemini", "gemini-upstream", "json"],
    ] {
        let output = tokio::process::Command::new(&python)
            .arg(&script)
            .arg(format!("{base}/v1"))
            .args(&args)
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "SDK script failed for {args:?}:\n{stdout}\n{stderr}"
        );
        assert!(stdout.contains("responses sdk ["), "{stdout}");
    }
    // The down server was tried (translated into chat) and the Anthropic one served; Gemini
    // served its model; no upstream was asked for its Responses endpoint.
    assert!(down.hits("/v1/chat/completions") >= 1);
    assert!(claude.hits("/v1/messages") >= 5);
    assert!(gemini.hits("/v1beta/models/{model}:generateContent") >= 3);
    assert!(gemini.hits("/v1beta/models/{model}:streamGenerateContent") >= 3);
    let responses_hits: u64 = [&down, &claude, &gemini]
        .iter()
        .map(|m| m.hits("/v1/responses"))
        .sum();
    assert_eq!(responses_hits, 0);
    nines.terminate().await;
}
