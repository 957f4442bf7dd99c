//! The Kubernetes manifests: every kustomization under `deploy/kubernetes` renders with
//! `kubectl kustomize`, passes `kubernetes-validate --strict` (offline: the schemas ship with it)
//! for the Kubernetes version below, and has the production shape the docs promise.
//!
//! Tools: `kubectl` with Kustomize v4 or later (components) from `PATH` or `/usr/bin`, and
//! `kubernetes-validate`, installed by this test into `target/pyenv-deploy` from PyPI (pinned in
//! `tests/deploy/requirements.txt`) unless `NINES_KUBERNETES_VALIDATE` names one. Without them
//! the test says it skipped, on the terminal (past the test harness' capture); under `CI` a
//! missing tool is a failure, since a skip would hide a broken install step (`.ci/run` installs
//! them).

use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The Kubernetes version the manifests are validated against.
const KUBERNETES: &str = "1.32.0";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn kubectl() -> Result<PathBuf, String> {
    let mut dirs = vec![PathBuf::from("/usr/bin"), PathBuf::from("/usr/local/bin")];
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    let kubectl = dirs
        .iter()
        .map(|d| d.join("kubectl"))
        .find(|p| p.is_file())
        .ok_or("no kubectl (the machine image has one; else `apt-get install kubectl`)")?;
    let out = Command::new(&kubectl)
        .args(["version", "--client"])
        .output()
        .map_err(|e| format!("{}: {e}", kubectl.display()))?;
    let version = String::from_utf8_lossy(&out.stdout).into_owned();
    let kustomize_major = version
        .lines()
        .find_map(|l| l.strip_prefix("Kustomize Version: v"))
        .and_then(|v| v.split('.').next()?.parse::<u32>().ok());
    match kustomize_major {
        Some(major) if major >= 4 => Ok(kubectl),
        _ => Err(format!(
            "{} has no Kustomize v4+ (components need it): {version}",
            kubectl.display()
        )),
    }
}

/// `kubernetes-validate` and a python with PyYAML (its dependency), in `target/pyenv-deploy`.
fn validator() -> Result<(PathBuf, PathBuf), String> {
    static SETUP: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = SETUP.lock().unwrap_or_else(|p| p.into_inner());
    if let Ok(bin) = std::env::var("NINES_KUBERNETES_VALIDATE") {
        let bin = PathBuf::from(bin);
        let python = bin.with_file_name("python");
        if !(bin.is_file() && python.is_file()) {
            return Err(format!(
                "NINES_KUBERNETES_VALIDATE={} has no python beside it",
                bin.display()
            ));
        }
        return Ok((bin, python));
    }
    let requirements = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/deploy/requirements.txt");
    let wanted = std::fs::read_to_string(&requirements).map_err(|e| e.to_string())?;
    let venv = repo().join("target/pyenv-deploy");
    let tools = (
        venv.join("bin/kubernetes-validate"),
        venv.join("bin/python"),
    );
    if std::fs::read_to_string(venv.join("requirements.txt"))
        .ok()
        .as_deref()
        == Some(&wanted)
    {
        return Ok(tools);
    }
    let staging = repo().join(format!(
        "target/pyenv-deploy-staging-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&staging);
    let run = |cmd: &mut Command| -> Result<(), String> {
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
    run(Command::new("python3").args(["-m", "venv"]).arg(&staging))?;
    run(Command::new(staging.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
        .arg(&requirements))?;
    std::fs::write(staging.join("requirements.txt"), &wanted).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_dir_all(&venv);
    if std::fs::rename(&staging, &venv).is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    Ok(tools)
}

/// Every directory under `deploy/kubernetes` with a kustomization that is not a component.
fn kustomizations() -> Vec<PathBuf> {
    let root = repo().join("deploy/kubernetes");
    let mut found = Vec::new();
    for group in ["base", "overlays"] {
        let dir = root.join(group);
        if dir.join("kustomization.yaml").is_file() {
            found.push(dir.clone());
        }
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.join("kustomization.yaml").is_file() {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

fn render(kubectl: &Path, dir: &Path) -> String {
    let out = Command::new(kubectl)
        .arg("kustomize")
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Validates `yaml` (written to `file`); returns whether it passed and what the validator said.
/// The script is run by the venv's python: its `#!` line may name the staging path it was
/// installed at.
fn validate(bin: &Path, python: &Path, file: &Path, yaml: &str) -> (bool, String) {
    std::fs::write(file, yaml).unwrap();
    let out = Command::new(python)
        .arg(bin)
        .args(["--strict", "--quiet", "-k", KUBERNETES])
        .arg(file)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success() && !said.contains("ERROR"), said)
}

/// The rendered documents as JSON (PyYAML does the YAML).
fn documents(python: &Path, yaml: &str) -> Vec<Value> {
    let mut child = Command::new(python)
        .args([
            "-c",
            "import sys, json, yaml; print(json.dumps([d for d in yaml.safe_load_all(sys.stdin) if d]))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(yaml.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).unwrap()
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

#[test]
fn kubernetes_manifests_render_validate_and_have_the_production_shape() {
    const TEST: &str = "kubernetes_manifests_render_validate_and_have_the_production_shape";
    let kubectl = match kubectl() {
        Ok(k) => k,
        Err(why) => return crate::skipped(TEST, &why),
    };
    let (validator, python) = match validator() {
        Ok(v) => v,
        Err(why) => return crate::skipped(TEST, &format!("no kubernetes-validate: {why}")),
    };
    let scratch = std::env::temp_dir().join(format!("nines-deploy-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    let dirs = kustomizations();
    assert!(dirs.len() >= 3, "{dirs:?}");
    let mut base_docs = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        let yaml = render(&kubectl, dir);
        let (ok, said) = validate(
            &validator,
            &python,
            &scratch.join(format!("{i}.yaml")),
            &yaml,
        );
        assert!(ok, "{}: {said}", dir.display());
        if dir.ends_with("base") {
            base_docs = documents(&python, &yaml);
        }
        if dir.ends_with("multi-tenant") {
            let docs = documents(&python, &yaml);
            let env = &find(&docs, "Deployment", "nines")["spec"]["template"]["spec"]["containers"]
                [0]["env"];
            let names: Vec<&str> = env
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|e| e["name"].as_str())
                .collect();
            for wanted in ["REDIS_URL", "POSTGRES_PASSWORD", "DATABASE_URL"] {
                assert!(names.contains(&wanted), "{wanted} in {names:?}");
            }
            let config = find(&docs, "ConfigMap", "nines-config")["data"]["nines.toml"]
                .as_str()
                .unwrap();
            assert!(config.contains("env:REDIS_URL") && config.contains("env:DATABASE_URL"));
            find(&docs, "StatefulSet", "nines-postgres");
            find(&docs, "Service", "nines-redis");
        }
    }

    // The validator is not vacuous: an unknown field fails.
    let broken = render(&kubectl, &repo().join("deploy/kubernetes/base")).replace(
        "terminationGracePeriodSeconds:",
        "terminationGracePeriodSecs:",
    );
    let (ok, _) = validate(&validator, &python, &scratch.join("broken.yaml"), &broken);
    assert!(!ok, "kubernetes-validate accepted an unknown field");

    // The production shape.
    let deployment = find(&base_docs, "Deployment", "nines");
    let pod = &deployment["spec"]["template"]["spec"];
    assert!(deployment["spec"]["replicas"].as_u64().unwrap() >= 2);
    let container = &pod["containers"][0];
    assert_eq!(
        container["readinessProbe"]["httpGet"]["path"],
        "/health/ready"
    );
    assert_eq!(
        container["livenessProbe"]["httpGet"]["path"],
        "/health/live"
    );
    // drain_delay 5 s + shutdown_grace 30 s + 5 s of flushing fit the grace period.
    assert!(pod["terminationGracePeriodSeconds"].as_u64().unwrap() >= 40);
    assert!(
        container["lifecycle"].is_null(),
        "no preStop: nines' drain_delay is the wait"
    );
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    // The config as a directory mount (never subPath, which never sees updates).
    let mounts = container["volumeMounts"].as_array().unwrap();
    assert!(mounts.iter().all(|m| m["subPath"].is_null()), "{mounts:?}");
    let config_mount = mounts.iter().find(|m| m["name"] == "config").unwrap();
    assert_eq!(config_mount["mountPath"], "/etc/nines");
    let volumes = pod["volumes"].as_array().unwrap();
    let config_volume = volumes.iter().find(|v| v["name"] == "config").unwrap();
    assert_eq!(config_volume["configMap"]["name"], "nines-config");
    let config = find(&base_docs, "ConfigMap", "nines-config");
    assert!(
        config["data"]["nines.toml"]
            .as_str()
            .unwrap()
            .contains("[[deployments]]")
    );
    // Provider keys from a Secret, never in the ConfigMap.
    assert_eq!(
        container["envFrom"][0]["secretRef"]["name"],
        "nines-secrets"
    );
    assert!(
        !config["data"]["nines.toml"]
            .as_str()
            .unwrap()
            .contains("sk-")
    );
    let pdb = find(&base_docs, "PodDisruptionBudget", "nines");
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
    let hpa = find(&base_docs, "HorizontalPodAutoscaler", "nines");
    assert!(hpa["spec"]["minReplicas"].as_u64().unwrap() >= 2);
    assert_eq!(hpa["spec"]["metrics"][0]["resource"]["name"], "cpu");
    let service = find(&base_docs, "Service", "nines");
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "http");
    let _ = std::fs::remove_dir_all(&scratch);
}

/// The systemd units pass `systemd-analyze verify` (with the binary's path pointed at
/// `/bin/true`, since nines is not installed here), and the stop timeout covers the drain.
#[test]
fn systemd_units_verify() {
    const TEST: &str = "systemd_units_verify";
    let Some(analyze) = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
    else {
        return crate::skipped(TEST, "no systemd-analyze (Debian: systemd)");
    };
    let units = repo().join("deploy/systemd");
    let scratch = std::env::temp_dir().join(format!("nines-systemd-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    let service = std::fs::read_to_string(units.join("nines.service")).unwrap();
    assert!(
        service.contains("TimeoutStopSec=45s"),
        "drain_delay + shutdown_grace + flush"
    );
    std::fs::write(
        scratch.join("nines.service"),
        service.replace("/usr/local/bin/nines", "/bin/true"),
    )
    .unwrap();
    std::fs::copy(units.join("nines.socket"), scratch.join("nines.socket")).unwrap();
    let out = Command::new(analyze)
        .arg("verify")
        .arg(scratch.join("nines.service"))
        .arg(scratch.join("nines.socket"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && said.trim().is_empty(), "{said}");
    let _ = std::fs::remove_dir_all(&scratch);
}
