//! Spawning the `nines` binary and reading its JSON log lines.

use nines_mock::MockServer;
use serde_json::Value;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

pub struct Nines {
    pub child: Child,
    /// Stdout, line by line. A task reads the pipe all the time: a gateway whose stdout pipe is
    /// full blocks in its logging, which would look like a gateway that hangs.
    pub lines: Lines,
    /// Every stdout line read so far.
    pub seen: Vec<String>,
}

/// The lines a reader task took from a child's stdout.
pub struct Lines(mpsc::UnboundedReceiver<String>);

impl Lines {
    /// The next line; `Ok(None)` at the end of the output.
    pub async fn next_line(&mut self) -> std::io::Result<Option<String>> {
        Ok(self.0.recv().await)
    }
}

/// A chaos mock named `name` (the model it reports) on an ephemeral port.
pub async fn mock(name: &str) -> MockServer {
    MockServer::local(name).await.unwrap()
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
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Nines {
            child,
            lines: Lines(rx),
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

    /// Sends a signal (`"HUP"`, `"TERM"`, `"INT"`, `"KILL"`) to the process.
    pub fn signal(&self, name: &str) {
        let pid = self.child.id().expect("pid");
        let status = std::process::Command::new("kill")
            .args([&format!("-{name}"), &pid.to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{name} {pid}");
    }

    /// Waits (at most `within`) for the process to exit; returns its status and the rest of
    /// stdout.
    pub async fn exited(mut self, within: Duration) -> (std::process::ExitStatus, Vec<String>) {
        let deadline = tokio::time::Instant::now() + within;
        // Stdout is read while waiting: a process whose pipe is full cannot exit.
        let mut open = true;
        let status = loop {
            tokio::select! {
                status = self.child.wait() => break status.expect("wait"),
                line = self.lines.next_line(), if open => match line {
                    Ok(Some(line)) => self.seen.push(line),
                    _ => open = false,
                },
                () = tokio::time::sleep_until(deadline) => {
                    panic!("nines did not exit within {within:?}; saw {:?}", self.seen)
                }
            }
        };
        while let Ok(Some(line)) = self.lines.next_line().await {
            self.seen.push(line);
        }
        (status, self.seen)
    }

    /// The JSON log lines written so far whose `message` is `wanted`. Reads stdout first until it
    /// has been quiet for 100 ms (at most 1 s): the gateway's writer thread puts a line on stdout
    /// a moment after it was logged, so a line logged before the event the test just saw (on
    /// `/metrics`, in an answer) may still be on its way.
    pub async fn logged(&mut self, wanted: &str) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        loop {
            let quiet = (tokio::time::Instant::now() + Duration::from_millis(100)).min(deadline);
            match tokio::time::timeout_at(quiet, self.lines.next_line()).await {
                Ok(Ok(Some(line))) => self.seen.push(line),
                // Quiet, past the deadline, or the end of stdout.
                _ => break,
            }
        }
        self.seen
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["message"] == wanted)
            .collect()
    }

    /// Sends SIGTERM and returns the exit status plus the rest of stdout.
    pub async fn terminate(self) -> (std::process::ExitStatus, Vec<String>) {
        self.signal("TERM");
        self.exited(Duration::from_secs(20)).await
    }
}
