//! Every shipped configuration passes `nines check`: the examples under `examples/` and the ones
//! the container and Kubernetes deployments mount (`deploy/**/nines.toml`). Secrets they read
//! from the environment are set to stand-ins here; nothing connects anywhere.

use crate::process::command;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The `.toml` files under `dir`, recursively, sorted.
fn configs(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "toml") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

#[tokio::test]
async fn every_shipped_config_passes_nines_check() {
    let root = repo();
    let mut files = configs(&root.join("examples"));
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for wanted in [
        "single-provider.toml",
        "failover.toml",
        "self-hosted-replicas.toml",
        "multi-tenant.toml",
    ] {
        assert!(
            names.iter().any(|n| n == wanted),
            "examples/{wanted} is missing: {names:?}"
        );
    }
    files.extend(
        configs(&root.join("deploy"))
            .into_iter()
            .filter(|p| p.ends_with("nines.toml")),
    );
    assert!(files.len() >= 6, "{files:?}");
    for file in &files {
        let output = command(&["check", "--config", file.to_str().unwrap()])
            .env("OPENAI_API_KEY", "sk-example")
            .env("ANTHROPIC_API_KEY", "sk-ant-example")
            .env("GEMINI_API_KEY", "example")
            .env("NINES_ADMIN_KEY", "admin-example")
            .env("REDIS_URL", "redis://127.0.0.1:6379")
            .env("DATABASE_URL", "postgres://nines@127.0.0.1:5432/nines")
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{}: {}{stdout}",
            file.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(stdout.contains(": ok ("), "{}: {stdout}", file.display());
        assert!(
            !stdout.contains("sk-example"),
            "a key in check's output: {stdout}"
        );
    }
}
