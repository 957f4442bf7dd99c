//! The status page: `/status.json` during an outage a route absorbed and one it could not, the
//! public and private views, access (off, private), and the HTML page rendered by a real
//! headless Chromium.

use crate::harness::{Harness, chain, hello};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;

const ADMIN: &str = "sk-status-admin";

/// The admin key, for the private view.
fn admin() -> String {
    format!(
        "\n[auth]\nenabled = false\nadmin_key = \"{ADMIN}\"\n\n[store]\ndatabase_url = \"sqlite::memory:\"\n"
    )
}

/// `chat` and `embed` on d0 → d1, and `steady` on d1 alone.
fn outage_config() -> String {
    format!(
        "{}\n[[models]]\nname = \"steady\"\ndeployments = [\"d1\"]\n\n[status]\ntitle = \"Test <status>\"\n{}",
        chain(2),
        admin()
    )
}

/// Polls the private `/status.json` until `cond` holds; fails with the last body after `within`.
async fn status_when(h: &Harness, within: Duration, cond: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let response = h
            .client
            .get(h.url("/status.json"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        if cond(&body) {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "status not reached within {within:?}: {body:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The anonymous `/status.json`: the public view.
pub(crate) async fn public_status(h: &Harness) -> Value {
    let response = h.client.get(h.url("/status.json")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

pub(crate) fn route<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no route {name}: {status:#}"))
}

fn deployment<'a>(route: &'a Value, name: &str) -> &'a Value {
    route["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == name)
        .unwrap_or_else(|| panic!("no deployment {name}: {route:#}"))
}

fn has_open_incident(status: &Value, key_slot: &str) -> bool {
    status["incidents"]["current"]
        .as_array()
        .is_some_and(|l| l.iter().any(|i| i["key_slot"] == key_slot))
}

/// d0 answers 503 to everything; six requests to `chat` all succeed through d1, and the fifth
/// failure in a row opens d0's breaker.
async fn start_outage() -> Harness {
    let h = Harness::start(2, &outage_config()).await;
    h.fault(0, json!({"status": 503}));
    for _ in 0..6 {
        let response = h.chat(&hello("chat")).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-nines-deployment"], "d1");
    }
    h
}

#[tokio::test]
async fn status_json_shows_an_outage_the_route_absorbed() {
    let h = start_outage().await;
    let status = status_when(&h, Duration::from_secs(10), |s| {
        has_open_incident(s, "d0#0")
    })
    .await;

    assert_eq!(status["view"], "private");
    assert_eq!(status["title"], "Test <status>");
    assert_eq!(status["slo"], 0.999);
    assert_eq!(status["ledger"], true);
    assert!(status["generated_at"].as_str().unwrap().ends_with('Z'));
    // Clients saw nothing: every model is operational, the banner green.
    assert_eq!(status["state"], "operational");

    let chat = route(&status, "chat");
    assert_eq!(chat["state"], "operational");
    assert_eq!(chat["reasons"], json!([]));
    assert_eq!(
        chat["note"],
        "1 of 2 providers failing; all requests served"
    );
    assert_eq!(chat["deployment_reasons"], json!(["deployment d0 is down"]));
    // What clients saw: every request answered.
    for window in ["1h", "24h", "30d", "90d"] {
        assert_eq!(
            chat["availability"][window]["availability"], 1.0,
            "{window}"
        );
        assert_eq!(chat["availability"][window]["requests"], 6, "{window}");
        assert_eq!(chat["availability"][window]["failures"], 0, "{window}");
    }
    assert_eq!(chat["recent_availability"], 1.0);
    let days = chat["days"].as_array().unwrap();
    assert_eq!(days.len(), 90);
    let today = &days[89];
    assert_eq!(
        (today["requests"].as_u64(), today["failures"].as_u64()),
        (Some(6), Some(0))
    );
    assert_eq!(today["date"].as_str().unwrap().len(), 10);
    assert!(
        days[..89]
            .iter()
            .all(|d| d["requests"] == 0 && d["availability"].is_null())
    );
    assert!(chat["ttfb_ms"]["p50_ms"].as_f64().is_some(), "{chat:#}");
    assert_eq!(chat["ttfb_ms"]["samples"], 6);
    assert_eq!(chat["ttfb_ms"]["relative_error"], 0.01);

    // What the upstreams did: d0 failed five attempts and was skipped after its breaker opened.
    let d0 = deployment(chat, "d0");
    assert_eq!(d0["state"], "down");
    assert_eq!(
        d0["key_slots"],
        json!([{"name": "d0#0", "breaker": "open"}])
    );
    assert_eq!(d0["availability"]["1h"]["requests"], 5);
    assert_eq!(d0["availability"]["1h"]["availability"], 0.0);
    assert_eq!(d0["in_flight"], 0);
    let d1 = deployment(chat, "d1");
    assert_eq!(d1["state"], "operational");
    assert_eq!(d1["availability"]["1h"]["availability"], 1.0);
    assert_eq!(d1["availability"]["1h"]["requests"], 6);
    assert_eq!(d1["days"].as_array().unwrap().len(), 90);

    // `embed` shares d0: operational without traffic, noting the provider; `steady` does not.
    let embed = route(&status, "embed");
    assert_eq!(embed["state"], "operational");
    assert_eq!(embed["note"], "1 of 2 providers failing");
    assert!(embed["availability"]["1h"]["availability"].is_null());
    let steady = route(&status, "steady");
    assert_eq!(steady["state"], "operational");
    assert_eq!(steady["reasons"], json!([]));
    assert!(steady["note"].is_null());

    let incident = &status["incidents"]["current"][0];
    assert_eq!(incident["deployment"], "d0");
    assert_eq!(incident["routes"], json!(["chat", "embed"]));
    assert_eq!(incident["reason"], "5 consecutive failures");
    assert!(incident["closed_at"].is_null());
    assert_eq!(status["incidents"]["recent"], json!([]));
    assert_eq!(status["incidents"]["recent_total"], 0);

    // Names only: no key, no upstream URL.
    let text = status.to_string();
    assert!(!text.contains("sk-upstream-secret"), "{text}");
    for mock in &h.mocks {
        assert!(!text.contains(&mock.addr().to_string()), "{text}");
    }
    assert!(!text.contains("http://"), "{text}");
    h.stop().await;
}

#[tokio::test]
async fn a_route_with_every_deployment_down_is_down() {
    let template = format!(
        "{}\n[resilience]\nmax_attempts_per_deployment = 1\n{}",
        chain(2),
        admin()
    );
    let h = Harness::start(2, &template).await;
    h.fault(0, json!({"status": 500}));
    h.fault(1, json!({"status": 500}));
    for _ in 0..5 {
        assert_eq!(h.chat(&hello("chat")).await.status(), 502);
    }
    let status = status_when(&h, Duration::from_secs(10), |s| {
        has_open_incident(s, "d0#0") && has_open_incident(s, "d1#0")
    })
    .await;
    assert_eq!(status["state"], "down");
    let chat = route(&status, "chat");
    assert_eq!(chat["state"], "down");
    assert_eq!(chat["reasons"][0], "no provider can serve it");
    assert_eq!(chat["availability"]["1h"]["availability"], 0.0);
    assert_eq!(chat["availability"]["1h"]["failures"], 5);
    assert_eq!(chat["recent_availability"], 0.0);
    assert_eq!(route(&status, "embed")["state"], "down");

    // Publicly: one incident, on the model whose clients saw failures (`embed` had no traffic),
    // with neither key slot, deployment nor breaker reason.
    let public = public_status(&h).await;
    assert_eq!(public["state"], "down");
    let current = public["incidents"]["current"].as_array().unwrap();
    assert_eq!(current.len(), 1, "{public:#}");
    assert_eq!(current[0]["models"], json!(["chat"]));
    assert_eq!(current[0]["failed_requests"], 5);
    assert!(current[0]["resolved_at"].is_null());
    assert_no_internals(&public.to_string());
    h.stop().await;
}

#[tokio::test]
async fn a_route_failing_clients_recently_is_degraded_with_its_breakers_closed() {
    // One failure in three, never five in a row: no breaker opens, but clients saw errors.
    let template = format!(
        "{}\n[resilience]\nmax_attempts_per_deployment = 1\n{}",
        chain(1),
        admin()
    );
    let h = Harness::start(1, &template).await;
    h.fault(0, json!({"status": 500, "times": 1}));
    assert_eq!(h.chat(&hello("chat")).await.status(), 502);
    for _ in 0..2 {
        assert_eq!(h.chat(&hello("chat")).await.status(), 200);
    }
    let status = status_when(&h, Duration::from_secs(5), |s| {
        route(s, "chat")["availability"]["1h"]["requests"] == 3
    })
    .await;
    let chat = route(&status, "chat");
    assert_eq!(deployment(chat, "d0")["state"], "operational");
    assert_eq!(chat["state"], "degraded");
    let reason = chat["reasons"][0].as_str().unwrap();
    assert!(
        reason.contains("66.667% of requests succeeded over the last 5 minutes"),
        "{reason}"
    );
    h.stop().await;
}

/// What only the private view may show: key slot names, breaker words, in-flight counts,
/// deployments and the breakers' reasons.
fn assert_no_internals(text: &str) {
    for word in [
        "d0#0",
        "d1#0",
        "d2#0",
        "\"d0\"",
        "\"d1\"",
        "breaker",
        "in_flight",
        "in flight",
        "key_slot",
        "deployment",
        "consecutive failures",
        "max_concurrency",
    ] {
        assert!(!text.contains(word), "{word:?} in the public view: {text}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_model_with_one_of_three_deployments_down_but_every_request_served_is_operational() {
    let h = Harness::start(3, &format!("{}{}", chain(3), admin())).await;
    h.fault(0, json!({"status": 503}));
    for _ in 0..8 {
        let response = h.chat(&hello("chat")).await;
        assert_eq!(response.status(), 200);
    }
    let private = status_when(&h, Duration::from_secs(10), |s| {
        has_open_incident(s, "d0#0")
    })
    .await;
    assert_eq!(deployment(route(&private, "chat"), "d0")["state"], "down");

    let public = public_status(&h).await;
    assert_eq!(public["view"], "public");
    assert_eq!(public["state"], "operational", "{public:#}");
    let chat = route(&public, "chat");
    assert_eq!(chat["state"], "operational");
    assert_eq!(chat["reasons"], json!([]));
    assert_eq!(
        chat["note"],
        "1 of 3 providers failing; all requests served"
    );
    assert_eq!(chat["availability"]["1h"]["availability"], 1.0);
    assert_eq!(chat["availability"]["1h"]["requests"], 8);
    // An outage absorbed is no incident to clients.
    assert_eq!(public["incidents"], json!({"current": [], "recent": []}));
    assert_no_internals(&public.to_string());
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_route_failing_most_clients_is_an_outage_with_its_breakers_closed() {
    let template = format!(
        "{}\n[resilience]\nmax_attempts_per_deployment = 1\n{}",
        chain(1),
        admin()
    );
    let h = Harness::start(1, &template).await;
    h.fault(0, json!({"status": 500, "times": 2}));
    for expected in [502, 502, 200] {
        assert_eq!(h.chat(&hello("chat")).await.status(), expected);
    }
    let status = status_when(&h, Duration::from_secs(5), |s| {
        route(s, "chat")["availability"]["1h"]["requests"] == 3
    })
    .await;
    let chat = route(&status, "chat");
    assert_eq!(deployment(chat, "d0")["state"], "operational");
    assert_eq!(chat["state"], "down");
    assert!(chat["note"].is_null());
    let public = public_status(&h).await;
    assert_eq!(route(&public, "chat")["state"], "down");
    // One model down, another fine: the banner is a partial outage.
    assert_eq!(public["state"], "degraded");
    assert_eq!(route(&public, "embed")["state"], "operational");
    let reason = route(&public, "chat")["reasons"][0]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        reason.starts_with("33.333% of requests succeeded"),
        "{reason}"
    );
    h.stop().await;
}

#[tokio::test]
async fn the_public_view_names_models_and_their_health_only() {
    let h = start_outage().await;
    let private = status_when(&h, Duration::from_secs(10), |s| {
        has_open_incident(s, "d0#0")
    })
    .await;
    // The private view has every internal.
    let text = private.to_string();
    for word in [
        "d0#0",
        "\"breaker\":\"open\"",
        "in_flight",
        "5 consecutive failures",
    ] {
        assert!(
            text.contains(word),
            "{word} missing from the private view: {text}"
        );
    }

    // Anonymous: the same models, their health, nothing else.
    let public = public_status(&h).await;
    assert_no_internals(&public.to_string());
    let chat = route(&public, "chat");
    let keys: Vec<&str> = chat
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "availability",
            "availability_objective",
            "days",
            "name",
            "note",
            "objectives",
            "reasons",
            "recent_availability",
            "state",
            "ttfb_ms"
        ]
    );
    assert_eq!(chat["ttfb_ms"], route(&private, "chat")["ttfb_ms"]);

    // The page: the anonymous document carries no private script; the admin's does.
    let page = h.client.get(h.url("/status")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    for word in ["breaker", "in flight", "in_flight", "key_slot", "d0#0"] {
        assert!(!html.contains(word), "{word:?} in the public page");
    }
    let page = h
        .client
        .get(h.url("/status"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    let html = page.text().await.unwrap();
    assert!(html.contains("circuit breaker open") && html.contains("in flight"));
    assert_eq!(
        csp.matches("'sha256-").count(),
        3,
        "two scripts, one style: {csp}"
    );

    // An admin of a public page signs in with the form at /status/login.
    let form = h.client.get(h.url("/status/login")).send().await.unwrap();
    assert_eq!(form.status(), 200);
    assert!(
        form.text()
            .await
            .unwrap()
            .contains("action=\"/status/login\"")
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn windows_longer_than_the_data_say_since_when() {
    let h = Harness::start(2, &outage_config()).await;
    // An hour and a half of quiet first: the first data are well inside every window but 1 h.
    tokio::time::advance(Duration::from_secs(90 * 60)).await;
    assert_eq!(h.chat(&hello("chat")).await.status(), 200);
    let first_minute = h.state.telemetry.clock.now_ms() / 60_000 * 60_000;
    tokio::time::advance(Duration::from_secs(65 * 60)).await;
    assert_eq!(h.chat(&hello("chat")).await.status(), 200);

    let public = public_status(&h).await;
    let windows = &route(&public, "chat")["availability"];
    // 1 h: the data cover it (the first request is over an hour old).
    assert!(windows["1h"]["since"].is_null(), "{windows:#}");
    assert_eq!(windows["1h"]["requests"], 1);
    for w in ["24h", "30d", "90d"] {
        assert_eq!(windows[w]["since_ms"], first_minute, "{w}: {windows:#}");
        assert!(windows[w]["since"].as_str().unwrap().ends_with('Z'));
        assert_eq!(windows[w]["availability"], 1.0);
        assert_eq!(windows[w]["requests"], 2);
    }
    // A model without traffic claims nothing.
    assert!(route(&public, "steady")["availability"]["30d"]["since"].is_null());
    h.stop().await;
}

#[tokio::test]
async fn the_status_page_can_be_turned_off() {
    let h = Harness::start(1, &format!("{}\n[status]\nenabled = false\n", chain(1))).await;
    for path in ["/status", "/status.json"] {
        let response = h.client.get(h.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 404, "{path}");
    }
    h.stop().await;
}

#[tokio::test]
async fn a_private_status_page_needs_the_admin_key() {
    let config = format!(
        "{}\n[auth]\nenabled = false\nadmin_key = \"sk-status-admin\"\n\n[store]\ndatabase_url = \"sqlite::memory:\"\n\n[status]\npublic = false\n",
        chain(1)
    );
    let h = Harness::start(1, &config).await;
    let get = |path: &str, header: Option<(&str, &str)>| {
        let mut request = h.client.get(h.url(path));
        if let Some((name, value)) = header {
            request = request.header(name, value);
        }
        request.send()
    };
    // Not signed in: the page is the sign-in form, the JSON a 401 asking for a bearer token.
    let form = get("/status", None).await.unwrap();
    assert_eq!(form.status(), 401);
    let form = form.text().await.unwrap();
    assert!(form.contains("action=\"/status/login\"") && form.contains("type=\"password\""));
    let refused = get("/status.json", None).await.unwrap();
    assert_eq!(refused.status(), 401);
    assert_eq!(
        refused.headers()["www-authenticate"],
        "Bearer realm=\"nines status\""
    );
    // base64("admin:sk-status-admin"): the admin key as a Basic password is no longer taken.
    let basic = ("authorization", "Basic YWRtaW46c2stc3RhdHVzLWFkbWlu");
    for path in ["/status", "/status.json"] {
        assert_eq!(get(path, Some(basic)).await.unwrap().status(), 401);
        let wrong = ("authorization", "Bearer sk-wrong");
        assert_eq!(get(path, Some(wrong)).await.unwrap().status(), 401);
        let right = ("authorization", "Bearer sk-status-admin");
        assert_eq!(
            get(path, Some(right)).await.unwrap().status(),
            200,
            "{path}"
        );
    }

    // Signing in: a wrong key is the form again; the right one a session cookie.
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let sign_in = |key: &'static str| {
        no_redirects
            .post(h.url("/status/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("key={key}"))
            .send()
    };
    assert_eq!(sign_in("sk-wrong").await.unwrap().status(), 401);
    let signed_in = sign_in("sk-status-admin").await.unwrap();
    assert_eq!(signed_in.status(), 303);
    assert_eq!(signed_in.headers()["location"], "/status");
    let set_cookie = signed_in.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"),
        "{set_cookie}"
    );
    assert!(!set_cookie.contains("sk-status-admin"), "{set_cookie}");
    let session = set_cookie.split(';').next().unwrap().to_owned();
    for path in ["/status", "/status.json"] {
        let answer = get(path, Some(("cookie", &session))).await.unwrap();
        assert_eq!(answer.status(), 200, "{path}");
    }
    // A session nines did not sign, or one altered, is refused.
    let (name_and_payload, _tag) = session.rsplit_once('.').unwrap();
    for forged in [
        format!("{name_and_payload}.AAAA"),
        "nines_status=eyJleHAiOjk5OTk5OTk5OTksImsiOiIifQ.x".to_owned(),
    ] {
        let answer = get("/status.json", Some(("cookie", &forged)))
            .await
            .unwrap();
        assert_eq!(answer.status(), 401, "{forged}");
    }
    let signed_out = no_redirects
        .post(h.url("/status/logout"))
        .send()
        .await
        .unwrap();
    assert_eq!(signed_out.status(), 303);
    assert!(
        signed_out.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    h.stop().await;

    // Private without an admin key could never be read: refused at load.
    let error = nines_gateway::Config::parse(
        Path::new("private.toml"),
        &format!("{}\n[status]\npublic = false\n", chain(1))
            .replace("{mock0}", "http://127.0.0.1:9/v1"),
        &|_| Some("sk-x".into()),
    )
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("status.public") && error.contains("auth.admin_key"),
        "{error}"
    );
}

#[tokio::test]
async fn the_page_is_one_self_contained_document() {
    let h = Harness::start(2, &outage_config()).await;
    let response = h.client.get(h.url("/status")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/html; charset=utf-8"
    );
    let csp = response.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.starts_with("default-src 'none'; script-src 'sha256-"),
        "{csp}"
    );
    assert!(csp.contains("connect-src 'self'"), "{csp}");
    let html = response.text().await.unwrap();
    assert!(
        html.contains("<title>Test &lt;status&gt;</title>"),
        "the title is escaped"
    );
    assert!(html.contains("name=\"viewport\""));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no CDN, no fonts"
    );
    assert!(html.contains("fetch(\"status.json\""));
    h.stop().await;
}

/// A deployment whose breaker opens, closes and opens again within the merge window is one
/// incident with two episodes, in both views; with no merge window, two.
#[tokio::test]
async fn a_flapping_deployment_is_one_incident_with_episodes() {
    for (window, incidents, episodes) in [("10m", 1, 2), ("0s", 2, 1)] {
        let template = format!(
            "{}\n[resilience.breaker]\ncooldown = \"100ms\"\nmax_cooldown = \"200ms\"\n\
             slow_start = \"0s\"\n\n[status]\nincident_merge_window = \"{window}\"\n{}",
            chain(2),
            admin()
        );
        let h = Harness::start(2, &template).await;
        for _ in 0..2 {
            // Down: five failovers open d0's breaker.
            h.fault(0, json!({"status": 503}));
            for _ in 0..6 {
                assert_eq!(h.chat(&hello("chat")).await.status(), 200);
            }
            status_when(&h, Duration::from_secs(10), |s| {
                has_open_incident(s, "d0#0")
            })
            .await;
            // Up again: after the cooldown the next request is d0's trial, which closes it.
            h.mock(0).set_fault(None);
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            loop {
                tokio::time::sleep(Duration::from_millis(50)).await;
                assert_eq!(h.chat(&hello("chat")).await.status(), 200);
                let s = status_when(&h, Duration::from_secs(1), |_| true).await;
                if !has_open_incident(&s, "d0#0") {
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "d0 never closed: {s:#}"
                );
            }
        }
        let status = status_when(&h, Duration::from_secs(1), |_| true).await;
        let recent = status["incidents"]["recent"].as_array().unwrap();
        assert_eq!(recent.len(), incidents, "window {window}: {status:#}");
        assert_eq!(status["incidents"]["recent_total"], incidents);
        assert_eq!(recent[0]["episodes"], episodes, "window {window}");
        assert_eq!(recent[0]["deployment"], "d0");
        if incidents == 1 {
            assert!(recent[0]["trips"].as_u64().unwrap() >= 2);
        }
        h.stop().await;
    }
}

/// The page as a plain HTTP client (no JavaScript) gets it: each model's state, the banner, the
/// availability figures and the incidents are in the HTML itself, as the same elements and
/// `data-*` attributes the script renders, and agree with `/status.json`.
#[tokio::test]
async fn the_page_reads_without_javascript() {
    // `chat` failed one client request in three (degraded); `embed` served everything.
    let template = format!(
        "{}\n[resilience]\nmax_attempts_per_deployment = 1\n{}",
        chain(1),
        admin()
    );
    let h = Harness::start(1, &template).await;
    h.fault(0, json!({"status": 500, "times": 1}));
    assert_eq!(h.chat(&hello("chat")).await.status(), 502);
    for model in ["chat", "chat", "embed"] {
        assert_eq!(h.chat(&hello(model)).await.status(), 200);
    }
    status_when(&h, Duration::from_secs(5), |s| {
        route(s, "chat")["availability"]["1h"]["requests"] == 3
    })
    .await;
    let html = h
        .client
        .get(h.url("/status"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let public = public_status(&h).await;
    let tags = tags(&html);
    let find = |attr: &str, value: &str| -> &Tag {
        tags.iter()
            .find(|t| t.get(attr) == Some(value))
            .unwrap_or_else(|| panic!("no element with {attr}=\"{value}\" in the HTML:\n{html}"))
    };
    assert_eq!(find("id", "banner").get("data-overall"), Some("degraded"));
    assert!(html.contains(">Degraded service<"), "the banner's words");
    assert_eq!(
        find("data-route", "chat").get("data-state"),
        Some("degraded")
    );
    assert_eq!(
        find("data-route", "embed").get("data-state"),
        Some("operational")
    );
    assert!(html.contains("66.667% of requests succeeded over the last 5 minutes"));
    // The figures are the JSON's.
    let hour = tags
        .iter()
        .find(|t| t.get("data-window") == Some("1h"))
        .unwrap();
    assert_eq!(
        hour.get("data-availability")
            .and_then(|a| a.parse::<f64>().ok()),
        route(&public, "chat")["availability"]["1h"]["availability"].as_f64()
    );
    let ttfb = find("data-route-ttfb", "embed");
    assert_eq!(
        ttfb.get("data-ttfb-p50")
            .and_then(|a| a.parse::<f64>().ok()),
        route(&public, "embed")["ttfb_ms"]["p50_ms"].as_f64()
    );
    assert_eq!(
        tags.iter()
            .filter(|t| t.get("data-uptime").is_some())
            .count(),
        2
    );
    assert!(tags.iter().any(|t| t.get("data-incidents-empty").is_some()));
    assert!(
        !html.contains("Checking…") && !html.contains("{{"),
        "nothing left unfilled"
    );
    // The public first paint names no internals (its stylesheet's class names aside).
    let body = &html[html.find("<body").unwrap()..html.find("<script>").unwrap()];
    assert_no_internals(body);
    h.stop().await;
}

// ---- the page in a real browser ----

/// The Chromium to drive: `NINES_CHROMIUM`, else Debian's `/usr/bin/chromium`, else one on PATH.
fn chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("NINES_CHROMIUM") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "NINES_CHROMIUM={} is not a file",
            path.display()
        );
        return Some(path);
    }
    let candidates = [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ];
    let mut dirs: Vec<PathBuf> = vec![PathBuf::from("/usr/bin")];
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs.iter()
        .flat_map(|d| candidates.iter().map(move |c| d.join(c)))
        .find(|p| p.is_file())
}

fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Runs headless Chromium on `url` with `args`; returns its stdout. Fails after 90 s.
async fn run_chromium(chromium: &Path, profile: &Path, args: &[String], url: &str) -> String {
    let mut command = tokio::process::Command::new(chromium);
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
            "--virtual-time-budget=8000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(90), command.output())
        .await
        .expect("chromium did not finish within 90 s")
        .expect("run chromium");
    assert!(
        output.status.success(),
        "chromium failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// One start tag of the dumped DOM: its name and attributes.
#[derive(Debug)]
struct Tag {
    attrs: Vec<(String, String)>,
}

impl Tag {
    fn get(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The start tags of serialised HTML with their attributes (quoted values, entities decoded);
/// enough for Chromium's `--dump-dom` output.
fn tags(html: &str) -> Vec<Tag> {
    let bytes = html.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'<' || !bytes.get(i + 1).is_some_and(u8::is_ascii_alphabetic) {
            i += 1;
            continue;
        }
        i += 1;
        while i < bytes.len() && !bytes[i].is_ascii_whitespace() && bytes[i] != b'>' {
            i += 1;
        }
        let mut attrs = Vec::new();
        loop {
            while i < bytes.len() && (bytes[i].is_ascii_whitespace() || bytes[i] == b'/') {
                i += 1;
            }
            if i >= bytes.len() || bytes[i] == b'>' {
                break;
            }
            let start = i;
            while i < bytes.len() && !matches!(bytes[i], b'=' | b'>' | b' ' | b'\n' | b'\t' | b'/')
            {
                i += 1;
            }
            let name = html[start..i].to_owned();
            let mut value = String::new();
            if bytes.get(i) == Some(&b'=') && bytes.get(i + 1) == Some(&b'"') {
                let from = i + 2;
                let to = from + html[from..].find('"').expect("closing quote");
                value = html[from..to]
                    .replace("&quot;", "\"")
                    .replace("&lt;", "<")
                    .replace("&gt;", ">")
                    .replace("&amp;", "&");
                i = to + 1;
            }
            attrs.push((name, value));
        }
        out.push(Tag { attrs });
    }
    out
}

#[tokio::test]
async fn status_page_renders_in_headless_chromium() {
    let Some(chromium) = chromium() else {
        assert!(
            !under_ci(),
            "CI is set but no Chromium was found: .ci/run installs Debian's chromium"
        );
        eprintln!(
            "SKIPPED status_page_renders_in_headless_chromium: no Chromium (/usr/bin/chromium or \
             NINES_CHROMIUM); `apt-get install chromium` to run it"
        );
        return;
    };
    let h = start_outage().await;
    status_when(&h, Duration::from_secs(10), |s| {
        has_open_incident(s, "d0#0")
    })
    .await;

    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let profile =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("chromium-{}", std::process::id()));
    let url = h.url("/status");

    let dom = run_chromium(&chromium, &profile, &["--dump-dom".into()], &url).await;
    let tags = tags(&dom);
    let find = |attr: &str, value: &str| -> &Tag {
        tags.iter()
            .find(|t| t.get(attr) == Some(value))
            .unwrap_or_else(|| panic!("no element with {attr}=\"{value}\" in the DOM:\n{dom}"))
    };
    assert_eq!(
        find("data-loaded", "true").get("data-loaded"),
        Some("true"),
        "the script ran"
    );
    // The anonymous page: the outage was absorbed, so every model is operational, `chat` and
    // `embed` with the quiet note; no deployment, key slot or breaker anywhere.
    assert_eq!(
        find("id", "banner").get("data-overall"),
        Some("operational")
    );
    for name in ["chat", "embed", "steady"] {
        assert_eq!(
            find("data-route", name).get("data-state"),
            Some("operational"),
            "{name}"
        );
    }
    assert!(dom.contains("1 of 2 providers failing; all requests served"));
    assert!(find("data-note", "embed").get("class").is_some());
    assert!(!tags.iter().any(|t| t.get("data-deployment").is_some()));
    // What the page shows (its stylesheet's class names aside).
    let body = &dom[dom.find("<body").expect("a body")..];
    assert_no_internals(body);
    assert!(tags.iter().any(|t| t.get("data-incidents-empty").is_some()));
    // The TTFB the page shows is the JSON's.
    let public = public_status(&h).await;
    let ttfb = &route(&public, "chat")["ttfb_ms"];
    let shown = find("data-route-ttfb", "chat");
    for p in ["p50", "p95"] {
        let attr = shown.get(&format!("data-ttfb-{p}")).unwrap();
        assert_eq!(
            attr.parse::<f64>().ok(),
            ttfb[format!("{p}_ms")].as_f64(),
            "{p}"
        );
    }

    // 90 bars per route; today's `chat` bar is green with its six requests in its title.
    for name in ["chat", "embed", "steady"] {
        let at = dom
            .find(&format!("data-uptime=\"{name}\""))
            .expect("uptime bars");
        let rest = &dom[at..];
        let end = rest.find("</div>").unwrap();
        assert_eq!(rest[..end].matches("data-day=").count(), 90, "{name}");
    }
    let bars: Vec<&Tag> = tags
        .iter()
        .filter(|t| t.get("data-day").is_some())
        .collect();
    let today = bars[89];
    assert_eq!(today.get("data-requests"), Some("6"));
    assert_eq!(today.get("class"), Some("bar ok"));
    assert!(
        today
            .get("title")
            .unwrap()
            .ends_with(": 6 requests, 0 failed, 100%"),
        "{today:?}"
    );
    assert_eq!(bars[0].get("class"), Some("bar none"));
    let hour = tags
        .iter()
        .find(|t| t.get("data-window") == Some("1h"))
        .unwrap();
    assert_eq!(hour.get("data-availability"), Some("1"));

    // Screenshots to look at: desktop and phone width.
    for (file, size) in [
        ("status-page.png", "1280,1500"),
        ("status-page-phone.png", "390,1800"),
    ] {
        let path = target.join(file);
        let _ = std::fs::remove_file(&path);
        run_chromium(
            &chromium,
            &profile,
            &[
                format!("--screenshot={}", path.display()),
                format!("--window-size={size}"),
            ],
            &url,
        )
        .await;
        let png = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
            "{file}"
        );
        eprintln!("screenshot: {}", path.display());
    }
    let _ = std::fs::remove_dir_all(&profile);
    h.stop().await;
}
