//! Findings 4 and 5: secrets in config errors, unbounded request ids, readiness details for
//! anyone, the admin key as a Basic password.

use crate::harness::{Harness, chain, hello};
use nines_gateway::Config;
use std::path::Path;

const ADMIN: &str = "sk-admin-security-0002";

#[test]
fn config_errors_name_the_field_and_the_mistake_never_the_secret() {
    let secret = "sk-live-THIS-MUST-NOT-APPEAR";
    let base = chain(1).replace("{mock0}", "http://127.0.0.1:9/v1");
    let cases = [
        // A key where a list is expected: serde would quote it.
        base.replace(
            "api_keys = [\"env:TEST_KEY\"]",
            &format!("api_keys = \"{secret}\""),
        ),
        // An admin key of the wrong type: a number is quoted too.
        format!("{base}\n[auth]\nadmin_key = 9182736455463728\n"),
        // Userinfo in a malformed base URL.
        base.replace(
            "http://127.0.0.1:9/v1",
            &format!("ftp://user:{secret}@127.0.0.1:9/v1"),
        ),
        // A Redis URL of the wrong type.
        format!("{base}\n[limits]\nredis_url = {{ url = \"redis://:{secret}@h\" }}\n"),
    ];
    for text in cases {
        let error = Config::parse(Path::new("secret.toml"), &text, &|_| Some("k".into()))
            .unwrap_err()
            .to_string();
        assert!(!error.contains(secret), "{error}");
        assert!(!error.contains("THIS-MUST-NOT"), "{error}");
        assert!(!error.contains("9182736455463728"), "{error}");
        assert!(!error.contains("serde_spanned"), "{error}");
        assert!(error.contains("secret.toml:"), "names the place: {error}");
    }
    // A field that is not secret keeps its value in the message (it helps).
    let error = Config::parse(
        Path::new("plain.toml"),
        &base.replace("provider = \"openai-compatible\"", "provider = \"openia\""),
        &|_| Some("k".into()),
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("openia"), "{error}");
}

#[tokio::test]
async fn request_ids_are_bounded_and_a_replaced_one_is_said_so() {
    let h = Harness::start(1, &chain(1)).await;
    let send = |id: Vec<u8>| {
        h.client
            .post(h.url("/v1/chat/completions"))
            .header(
                "x-request-id",
                reqwest::header::HeaderValue::from_bytes(&id).unwrap(),
            )
            .json(&hello("chat"))
            .send()
    };
    // A fine id is echoed and sent upstream as it is.
    let kept = send(b"req-123_abc".to_vec()).await.unwrap();
    assert_eq!(kept.status(), 200);
    assert_eq!(kept.headers()["x-request-id"], "req-123_abc");
    assert!(!kept.headers().contains_key("x-nines-request-id-replaced"));
    // 60 KB, a space, bytes that are not UTF-8: replaced by a generated id, and said so.
    for id in [
        vec![b'a'; 60_000],
        b"two words".to_vec(),
        vec![0xff, 0xfe, b'x'],
    ] {
        let replaced = send(id.clone()).await.unwrap();
        assert_eq!(replaced.status(), 200);
        let echoed = replaced.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            echoed.len() <= 128 && echoed.as_bytes() != id.as_slice(),
            "{echoed}"
        );
        assert!(
            replaced
                .headers()
                .contains_key("x-nines-request-id-replaced")
        );
    }
    // What the upstream received: the generated ids, never the long one, never empty.
    let upstream_ids: Vec<String> = h
        .mock(0)
        .requests()
        .iter()
        .filter_map(|r| {
            r.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("x-request-id"))
                .map(|(_, v)| v.clone())
        })
        .collect();
    assert_eq!(upstream_ids.len(), 4, "{upstream_ids:?}");
    assert_eq!(upstream_ids[0], "req-123_abc");
    assert!(
        upstream_ids
            .iter()
            .all(|id| !id.is_empty() && id.len() <= 128)
    );
    h.stop().await;
}

#[tokio::test]
async fn readiness_details_are_for_the_admin_key_only() {
    let config = format!(
        "{}\n[auth]\nadmin_key = \"{ADMIN}\"\n[[auth.keys]]\nkey = \"sk-tenant-00000001\"\nname = \"t\"\n\n[store]\ndatabase_url = \"sqlite::memory:\"\n",
        chain(1)
    );
    let h = Harness::start_opened(1, &config).await;
    let anonymous = h.get_json("/health/ready", None).await;
    assert_eq!(anonymous, serde_json::json!({"status": "ready"}));
    let tenant = h
        .get_json("/health/ready", Some("sk-tenant-00000001"))
        .await;
    assert_eq!(tenant, serde_json::json!({"status": "ready"}));
    let admin = h.get_json("/health/ready", Some(ADMIN)).await;
    assert_eq!(admin["checks"]["store"]["status"], "ok", "{admin}");
    h.stop().await;
}

#[tokio::test]
async fn the_private_status_page_never_takes_the_admin_key_as_a_basic_password() {
    let config = format!(
        "{}\n[auth]\nenabled = false\nadmin_key = \"{ADMIN}\"\n\n[store]\ndatabase_url = \"sqlite::memory:\"\n\n[status]\npublic = false\n",
        chain(1)
    );
    let h = Harness::start(1, &config).await;
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("admin:{ADMIN}"));
    let response = h
        .client
        .get(h.url("/status"))
        .header("authorization", format!("Basic {basic}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert!(!response.headers().contains_key("www-authenticate"));
    let page = response.text().await.unwrap();
    assert!(
        page.contains("action=\"/status/login\""),
        "the sign-in form: {page}"
    );
    h.stop().await;
}
