//! Spawning the `nines` binary and reading its JSON log lines.

use serde_json::Value;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

pub struct Nines {
    pub child: Child,
    pub lines: Lines<BufReader<ChildStdout>>,
    /// Every stdout line read so far.
    pub seen: Vec<String>,
}

/// An HTTP client for tests (installs the TLS provider reqwest is built to expect).
pub fn client() -> reqwest::Client {
    nines_gateway::providers::install_crypto_provider();
    reqwest::Client::new()
}

pub fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nines"));
    cmd.args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

impl Nines {
    pub fn spawn(mut cmd: Command) -> Nines {
        let mut child = cmd.spawn().expect("spawn nines");
        let stdout = child.stdout.take().expect("stdout");
        Nines {
            child,
            lines: BufReader::new(stdout).lines(),
            seen: Vec::new(),
        }
    }

    /// Reads log lines until one has `message == wanted`; returns it. Fails after 20 s.
    pub async fn wait_for(&mut self, wanted: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let line = tokio::time::timeout_at(deadline, self.lines.next_line())
                .await
                .unwrap_or_else(|_| panic!("no '{wanted}' line; saw {:?}", self.seen))
                .expect("read stdout")
                .unwrap_or_else(|| panic!("nines exited before '{wanted}'; saw {:?}", self.seen));
            self.seen.push(line.clone());
            if let Ok(v) = serde_json::from_str::<Value>(&line)
                && v["message"] == wanted
            {
                return v;
            }
        }
    }

    /// Reads stdout lines until one contains `needle`; returns it. Fails after 20 s.
    pub async fn line_containing(&mut self, needle: &str) -> String {
        if let Some(line) = self.seen.iter().find(|l| l.contains(needle)) {
            return line.clone();
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let line = tokio::time::timeout_at(deadline, self.lines.next_line())
                .await
                .unwrap_or_else(|_| panic!("no line with '{needle}'; saw {:?}", self.seen))
                .expect("read stdout")
                .unwrap_or_else(|| panic!("nines exited before '{needle}'; saw {:?}", self.seen));
            self.seen.push(line.clone());
            if line.contains(needle) {
                return line;
            }
        }
    }

    /// Waits for the listening line and returns `http://addr`.
    pub async fn base(&mut self) -> String {
        let line = self.wait_for("listening").await;
        format!("http://{}", line["addr"].as_str().expect("addr"))
    }

    /// Sends SIGTERM and returns the exit status plus the rest of stdout.
    pub async fn terminate(mut self) -> (std::process::ExitStatus, Vec<String>) {
        let pid = self.child.id().expect("pid");
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        let status = tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .expect("nines did not stop on SIGTERM")
            .expect("wait");
        while let Ok(Some(line)) = self.lines.next_line().await {
            self.seen.push(line);
        }
        (status, self.seen)
    }
}
