//! `nines check`: prints the routing table, or the error with file and line and exits non-zero.

use crate::process::command;
use crate::serve::tempdir;

#[tokio::test]
async fn check_prints_the_routing_table() {
    let dir = tempdir();
    let path = dir.join("ok.toml");
    std::fs::write(
        &path,
        r#"
[[deployments]]
name = "openai-mini"
provider = "openai"
model = "gpt-4o-mini"
api_keys = ["env:CHECK_KEY", "env:CHECK_KEY"]
price = { input = 0.15, output = 0.60 }

[[deployments]]
name = "nim"
provider = "nvidia"
model = "meta/llama-3.1-8b-instruct"
api_keys = ["env:CHECK_KEY"]
price = { input = 0.10, output = 0.10 }

[[models]]
name = "chat-default"
deployments = ["openai-mini", "nim"]
strategy = "cheapest"
"#,
    )
    .unwrap();
    let output = command(&["check", "--config", path.to_str().unwrap()])
        .env("CHECK_KEY", "sk-xyz-secret")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("chat-default [strategy: cheapest]"),
        "{stdout}"
    );
    assert!(
        stdout.contains("https://integrate.api.nvidia.com/v1"),
        "nvidia preset base URL: {stdout}"
    );
    assert!(
        stdout.contains("openai/gpt-4o-mini (provider-prefixed)"),
        "{stdout}"
    );
    // Cheapest first: nim ($0.20) before openai-mini ($0.75).
    let nim = stdout.find("1. nim#0").expect(&stdout);
    let mini = stdout.find("openai-mini#").expect(&stdout);
    assert!(nim < stdout[mini..].len() + mini);
    assert!(!stdout.contains("sk-xyz-secret"));
}

#[tokio::test]
async fn check_rejects_a_bad_file_with_its_line() {
    let dir = tempdir();
    let path = dir.join("bad.toml");
    std::fs::write(
        &path,
        "[server]\nlisten = \"127.0.0.1:8080\"\nlisen = \"x\"\n",
    )
    .unwrap();
    let output = command(&["check", "--config", path.to_str().unwrap()])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bad.toml:3:"), "{stderr}");
    assert!(stderr.contains("lisen"), "{stderr}");

    let output = command(&["check", "--config", "/nonexistent/nines.toml"])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot read the file"));
}

/// Named OpenAI-compatible services resolve to their documented base URL and bearer auth; a
/// deployment's own `base_url` wins; a local server needs no key; `check` shows what each
/// resolved to.
#[tokio::test]
async fn check_shows_what_named_providers_resolved_to() {
    let dir = tempdir();
    let path = dir.join("named.toml");
    std::fs::write(
        &path,
        r#"
[[deployments]]
name = "groq-fast"
provider = "groq"
model = "llama-3.1-8b-instant"
api_keys = ["env:CHECK_KEY"]

[[deployments]]
name = "router"
provider = "openrouter"
model = "meta-llama/llama-3.1-8b-instruct"
api_keys = ["env:CHECK_KEY"]
base_url = "https://eu.openrouter.example/api/v1/"

[[deployments]]
name = "laptop"
provider = "ollama"
model = "llama3.2"

[[models]]
name = "chat"
deployments = ["groq-fast", "router", "laptop"]
"#,
    )
    .unwrap();
    let output = command(&["check", "--config", path.to_str().unwrap()])
        .env("CHECK_KEY", "gsk-secret-value")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    for expected in [
        "groq-fast            groq",
        "resolved: openai-compatible (openai dialect), POST https://api.groq.com/openai/v1/…, key in Authorization: Bearer",
        "POST https://eu.openrouter.example/api/v1/…",
        "laptop               ollama",
        "POST http://localhost:11434/v1/…, key in none (Authorization: Bearer when a key is set)",
        "groq/llama-3.1-8b-instant (provider-prefixed)",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
    assert!(!stdout.contains("gsk-secret-value"));

    // A hosted service still needs its key; an unknown name lists the kinds and the services.
    std::fs::write(
        &path,
        "[[deployments]]\nname = \"g\"\nprovider = \"groq\"\nmodel = \"m\"\n",
    )
    .unwrap();
    let output = command(&["check", "--config", path.to_str().unwrap()])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("provider 'groq' needs at least one API key"),
        "{stderr}"
    );
    std::fs::write(
        &path,
        "[[deployments]]\nname = \"g\"\nprovider = \"grok\"\nmodel = \"m\"\n",
    )
    .unwrap();
    let output = command(&["check", "--config", path.to_str().unwrap()])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("named.toml:3:"), "{stderr}");
    assert!(
        stderr.contains("openai-compatible") && stderr.contains("groq, together"),
        "{stderr}"
    );
}

/// With completion probes, `nines check` prices them: per probe (10 prompt tokens and 1 output
/// token at most) and per hour at the healthy interval, for every key slot.
#[tokio::test]
async fn check_prices_completion_probes() {
    let dir = tempdir();
    let path = dir.join("probes.toml");
    std::fs::write(
        &path,
        r#"
[resilience.probes]
kind = "completion"
interval = "15s"

[[deployments]]
name = "gpt"
provider = "openai"
model = "gpt-4o"
api_keys = ["k1", "k2"]
price = { input = 2.5, output = 10.0 }

[[models]]
name = "chat"
deployments = ["gpt"]
"#,
    )
    .unwrap();
    let output = command(&["check", "--config", path.to_str().unwrap()])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    // (10 × 2.5 + 1 × 10) / 1e6 = $0.000035 a probe; 240 probes an hour on each of 2 key slots.
    assert!(stdout.contains("probes: completion every 15s"), "{stdout}");
    assert!(
        stdout.contains("$0.00003500 per probe, $0.016800 per hour (2 key slots)"),
        "{stdout}"
    );
}
