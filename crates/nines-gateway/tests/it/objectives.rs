//! Latency objectives over real HTTP: a route behind a slow mock misses `ttft_p50` and
//! `latency_p99` and is degraded on the status page (with the reason, in the JSON and the
//! server-rendered HTML); a fast one meets its objective; the SLA report counts the minute windows
//! that met each; and a bad objective is refused at load with its key path.

use crate::harness::{Harness, hello};
use crate::status_page::route;
use serde_json::{Value, json};
use std::path::Path;

const ADMIN: &str = "sk-objectives-admin";

/// `slow` on d0 (made slow), `fast` on d1, `plain` on d1 without objectives.
fn template() -> String {
    let mut text = String::from(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[resilience.probes]\nenabled = false\n",
    );
    for i in 0..2 {
        text.push_str(&format!(
            "\n[[deployments]]\nname = \"d{i}\"\nprovider = \"openai-compatible\"\n\
             model = \"up-model-{i}\"\nbase_url = \"{{mock{i}}}\"\napi_keys = [\"env:TEST_KEY\"]\n\
             timeouts = {{ first_byte = \"5s\", idle = \"5s\", total = \"10s\" }}\n"
        ));
    }
    text.push_str(
        "\n[[models]]\nname = \"slow\"\ndeployments = [\"d0\"]\n\
         slo = { availability = 0.99, ttft_p50 = \"100ms\", latency_p99 = \"150ms\" }\n\
         \n[[models]]\nname = \"fast\"\ndeployments = [\"d1\"]\nslo = { ttft_p99 = \"5s\" }\n\
         \n[[models]]\nname = \"plain\"\ndeployments = [\"d1\"]\n",
    );
    text.push_str(&format!(
        "\n[auth]\nenabled = false\nadmin_key = \"{ADMIN}\"\n\n[store]\ndatabase_url = \"sqlite::memory:\"\n"
    ));
    text
}

fn objective<'a>(route: &'a Value, key: &str) -> &'a Value {
    route["objectives"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["objective"] == key)
        .unwrap_or_else(|| panic!("no objective {key}: {route:#}"))
}

#[tokio::test]
async fn a_route_missing_its_latency_objectives_is_degraded_and_reported() {
    let h = Harness::start(2, &template()).await;
    h.fault(0, json!({"latency_ms": 250}));
    for model in ["slow", "slow", "slow", "fast", "fast", "fast", "plain"] {
        assert_eq!(h.chat(&hello(model)).await.status(), 200, "{model}");
    }

    let status = h.get_json("/status.json", Some(ADMIN)).await;
    let slow = route(&status, "slow");
    // Every request was answered: only latency makes it degraded.
    assert_eq!(slow["recent_availability"], 1.0);
    assert_eq!(slow["state"], "degraded", "{slow:#}");
    assert_eq!(slow["availability_objective"], 0.99);
    let reason = slow["reasons"][0].as_str().unwrap();
    assert!(
        reason.starts_with("time to first token p50 was ")
            && reason
                .contains("over the last 5 minutes, above the 100 ms objective; latency p99 was "),
        "{reason}"
    );
    let ttft = objective(slow, "ttft_p50");
    assert_eq!(ttft["bound_ms"], 100.0);
    assert_eq!(ttft["met"], false);
    assert!(
        ttft["recent_ms"].as_f64().unwrap() >= 250.0 * 0.99,
        "{ttft}"
    );
    let windows = &ttft["windows"];
    assert!(windows["judged"].as_u64().unwrap() >= 1, "{windows}");
    assert_eq!(
        (&windows["met"], &windows["share"]),
        (&json!(0), &json!(0.0))
    );
    assert_eq!(objective(slow, "latency_p99")["met"], false);

    let fast = route(&status, "fast");
    assert_eq!(fast["state"], "operational");
    assert_eq!(fast["availability_objective"], 0.999, "telemetry.slo");
    let p99 = objective(fast, "ttft_p99");
    assert_eq!(p99["met"], true);
    assert_eq!(p99["windows"]["share"], 1.0);
    assert_eq!(route(&status, "plain")["objectives"], json!([]));
    assert_eq!(status["state"], "degraded");

    // The public view and the page's first paint say the same.
    let public = h.get_json("/status.json", None).await;
    assert_eq!(route(&public, "slow")["state"], "degraded");
    assert_eq!(objective(route(&public, "slow"), "ttft_p50")["met"], false);
    let html = h
        .client
        .get(h.url("/status"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains(
            "data-objective=\"ttft_p50\" data-objective-met=\"false\" data-objective-share=\"0\""
        ),
        "{html}"
    );
    assert!(html.contains(
        "data-objective=\"ttft_p99\" data-objective-met=\"true\" data-objective-share=\"1\""
    ));
    assert!(html.contains("TTFT p50 ≤ 100 ms: <b>0%</b> of minutes"));

    // The SLA report: the minutes judged and met, per objective.
    let report = h
        .get_json("/admin/reports/sla?window=1h", Some(ADMIN))
        .await;
    let slow = report["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["route"] == "slow")
        .unwrap();
    assert_eq!(
        slow["error_budget"]["slo"], 0.99,
        "its own availability objective"
    );
    let rows = slow["objectives"].as_array().unwrap();
    let keys: Vec<&str> = rows
        .iter()
        .map(|o| o["objective"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["ttft_p50", "latency_p99"]);
    for row in rows {
        assert_eq!(row["windows"]["met"], 0, "{row}");
        assert!(row["windows"]["judged"].as_u64().unwrap() >= 1, "{row}");
        assert_eq!(row["windows_objective"], 0.99);
    }
    let md = h
        .client
        .get(h.url("/admin/reports/sla?window=1h&format=md"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        md.contains("## Latency objectives (per minute window)"),
        "{md}"
    );
    assert!(md.contains("| slow | ttft_p50 ≤ 100 ms | 0 of "), "{md}");
    h.stop().await;
}

#[test]
fn a_bad_objective_is_refused_with_its_key_path() {
    for (slo, key) in [
        ("{ availability = 1.5 }", "models[0].slo.availability"),
        ("{ ttft_p99 = \"0s\" }", "models[0].slo.ttft_p99"),
        ("{ windows = 0 }", "models[0].slo.windows"),
        ("{ ttft_p42 = \"1s\" }", "ttft_p42"),
    ] {
        let text = format!(
            "[[deployments]]\nname = \"d0\"\nprovider = \"openai-compatible\"\nmodel = \"m\"\n\
             base_url = \"http://127.0.0.1:9/v1\"\napi_keys = [\"k\"]\n\n[[models]]\nname = \"chat\"\n\
             deployments = [\"d0\"]\nslo = {slo}\n"
        );
        let error = nines_gateway::Config::parse(Path::new("t.toml"), &text, &|_| None)
            .unwrap_err()
            .to_string();
        assert!(error.contains(key), "{slo}: {error}");
    }
}
