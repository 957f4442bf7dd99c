//! A gateway whose stdout nobody reads (a stalled log shipper, a paused terminal) keeps serving,
//! and every line it queued meanwhile reaches stdout once the reader is back.

use crate::process::{client, command, mock};
use crate::serve::tempdir;
use serde_json::{Value, json};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

/// Each request writes a line of ~700 bytes: ~1 MB in all, sixteen times a pipe's 64 KiB.
const REQUESTS: usize = 1_500;
const CLIENTS: usize = 8;

#[tokio::test]
async fn requests_go_on_while_nobody_reads_stdout_and_no_line_is_lost() {
    let mock = mock("m").await;
    let dir = tempdir();
    let path = dir.join("nines.toml");
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[[deployments]]\nname = \"d\"\nprovider = \"openai-compatible\"\nmodel = \"m\"\nbase_url = \"{}\"\n\n[[models]]\nname = \"chat\"\ndeployments = [\"d\"]\n",
        mock.base_url()
    );
    std::fs::write(&path, config).unwrap();
    let mut cmd = command(&["serve", "--config", path.to_str().unwrap()]);
    // The request log on: one line per request.
    cmd.env("NINES_LOG", "info");
    let mut child = cmd.spawn().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let read = |line: Option<String>| line.and_then(|l| serde_json::from_str::<Value>(&l).ok());

    // Read up to the listening line, then stop reading; the pipe stays open and fills.
    let addr = loop {
        let line = tokio::time::timeout(Duration::from_secs(20), stdout.next_line())
            .await
            .expect("no listening line within 20 s")
            .unwrap();
        let Some(line) = read(line) else { continue };
        if line["message"] == "listening" {
            break line["addr"].as_str().unwrap().to_owned();
        }
    };

    let url = format!("http://{addr}/v1/chat/completions");
    let client = client();
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        let (client, url) = (client.clone(), url.clone());
        clients.spawn(async move {
            let mut statuses = Vec::new();
            for _ in 0..REQUESTS / CLIENTS {
                let response = client
                    .post(&url)
                    .json(
                        &json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}]}),
                    )
                    .send()
                    .await
                    .unwrap();
                statuses.push(response.status().as_u16());
            }
            statuses
        });
    }
    let statuses: Vec<u16> = tokio::time::timeout(Duration::from_secs(60), clients.join_all())
        .await
        .expect("requests stalled behind a stdout nobody reads")
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(statuses.len(), REQUESTS / CLIENTS * CLIENTS);
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");

    // The reader is back: stop the gateway and read to the end. Every request's line is there.
    let pid = child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let mut request_lines = 0;
    let mut stopped = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while let Some(line) = tokio::time::timeout_at(deadline, stdout.next_line())
        .await
        .expect("stdout did not end within 30 s of SIGTERM")
        .unwrap()
    {
        let Some(line) = read(Some(line)) else {
            continue;
        };
        request_lines += usize::from(line["message"] == "request");
        stopped |= line["message"] == "stopped";
    }
    assert_eq!(request_lines, statuses.len());
    assert!(stopped, "the last line before exit is written too");
    assert!(child.wait().await.unwrap().success());
    let _ = std::fs::remove_dir_all(dir);
}
