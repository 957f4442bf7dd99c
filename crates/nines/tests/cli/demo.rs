//! `nines demo`: no keys, no network; answers during its scripted outage.

use crate::process::{Nines, command};
use serde_json::{Value, json};

#[tokio::test]
async fn demo_answers_during_its_outage() {
    let mut nines = Nines::spawn(command(&["demo", "--listen", "127.0.0.1:0"]));
    let base = nines.base().await;
    let client = crate::process::client();
    // The primary's outage starts at time 0 and lasts 8 s, so these requests land inside it.
    for _ in 0..5 {
        let response = client
            .post(format!("{base}/v1/chat/completions"))
            .json(&json!({"model": "chat-default", "messages": [{"role": "user", "content": "Hello!"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-nines-deployment"], "secondary");
        assert_eq!(response.headers()["x-nines-attempts"], "2");
        let body: Value = response.json().await.unwrap();
        assert!(
            body["choices"][0]["message"]["content"]
                .as_str()
                .unwrap()
                .contains("secondary")
        );
    }
    let (status, _) = nines.terminate().await;
    assert!(status.success());
}
