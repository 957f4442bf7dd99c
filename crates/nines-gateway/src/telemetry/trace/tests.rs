use super::*;
use crate::config::Config;
use crate::config::Deployment;
use crate::tracecontext::*;
use opentelemetry::trace::TraceId;
use std::path::Path;
use std::sync::Arc;

const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[test]
fn a_valid_traceparent_parses() {
    let (trace, parent, flags) = parse_traceparent(VALID).unwrap();
    assert_eq!(trace.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(parent.to_string(), "00f067aa0ba902b7");
    assert!(flags.is_sampled());
    assert_eq!(traceparent(trace, parent, flags), VALID);
    // A later version may append fields after the flags.
    let later = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-what-ever";
    let (_, _, flags) = parse_traceparent(later).unwrap();
    assert!(!flags.is_sampled());
}

#[test]
fn invalid_traceparents_are_refused() {
    for bad in [
        "",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        // Uppercase hex, zero ids, version ff, a version 00 with more, wrong separators.
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
        "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
        "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
        "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
        "0é-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
    ] {
        assert!(parse_traceparent(bad).is_none(), "{bad}");
    }
}

#[test]
fn ratio_sampling_matches_the_sdk_rule() {
    let low_zero = TraceId::from(0xabcd_u128 << 64);
    assert!(
        sampled_by_ratio(low_zero, 0.01),
        "low bits 0: under any ratio"
    );
    assert!(!sampled_by_ratio(low_zero, 0.0));
    let low_max = TraceId::from(u128::from(u64::MAX));
    assert!(!sampled_by_ratio(low_max, 0.99));
    assert!(sampled_by_ratio(low_max, 1.0));
    let kept = (0..10_000)
        .filter(|_| sampled_by_ratio(new_trace_id(), 0.25))
        .count();
    assert!((2_000..3_000).contains(&kept), "{kept} of 10000 at 0.25");
}

fn deployment() -> Arc<Deployment> {
    let text = "[[deployments]]\nname = \"d0\"\nprovider = \"anthropic\"\nmodel = \"claude-x\"\nbase_url = \"https://api.example.com:8443/v1\"\napi_keys = [\"k\"]\n\n[[models]]\nname = \"m\"\ndeployments = [\"d0\"]\n";
    let config = Config::parse(Path::new("t.toml"), text, &|_| None).unwrap();
    Arc::clone(&config.deployments[0])
}

fn trace(sampled: bool) -> RequestTrace {
    RequestTrace {
        trace_id: TraceId::from(7u128),
        span_id: SpanId::from(8u64),
        parent: None,
        sampled,
        started: Instant::now(),
    }
}

#[test]
fn propagation_forwards_when_off_and_makes_a_child_per_attempt_when_on() {
    let d = deployment();
    let (span, header) = Propagation::new(None, None).attempt(&d);
    assert!(span.is_none() && header.is_none());
    let (span, header) = Propagation::new(None, Some("anything-the-client-sent")).attempt(&d);
    assert!(span.is_none());
    assert_eq!(header.unwrap(), "anything-the-client-sent");

    let t = trace(false);
    let on = Propagation::new(Some(&t), Some(VALID));
    let (a, ha) = on.attempt(&d);
    let (b, hb) = on.attempt(&d);
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_ne!(a.span_id, b.span_id);
    assert_eq!(
        ha.unwrap(),
        format!("00-{:032x}-{}-00", 7, a.span_id).as_str()
    );
    assert_eq!(
        hb.unwrap(),
        format!("00-{:032x}-{}-00", 7, b.span_id).as_str()
    );
}

fn attr<'a>(span: &'a SpanData, key: &str) -> Option<&'a opentelemetry::Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| &kv.value)
}

fn record(class: FailureClass, status: Option<u16>, span: Option<AttemptSpan>) -> AttemptRecord {
    AttemptRecord {
        deployment: "d0".into(),
        key_alias: "d0#0".into(),
        class,
        status,
        elapsed: Duration::from_millis(5),
        detail: "upstream said no".into(),
        retry_after: Some(Duration::from_secs(2)),
        span,
    }
}

#[test]
fn spans_mark_failures_and_leave_client_errors_and_cancelled_hedges_unset() {
    let d = deployment();
    let t = trace(true);
    let on = Propagation::new(Some(&t), None);
    let span = |_| on.attempt(&d).0;
    let summary = RequestSummary {
        request_id: "r1".into(),
        endpoint: "messages",
        model: "m".into(),
        status: 200,
        outcome: "ok".into(),
        deployment: Some("d0".into()),
        served: true,
        attempts: vec![
            record(FailureClass::RateLimited, Some(429), span(0)),
            record(FailureClass::Ok, Some(200), span(1)),
            record(FailureClass::Cancelled, None, span(2)),
            // No span (video attempts): no attempt span.
            record(FailureClass::Server, Some(500), None),
        ],
        tokens_in: Some(10),
        tokens_out: Some(3),
        usage_estimated: true,
        started_at_ms: 1_000,
        latency: Duration::from_millis(50),
        trace: Some(t),
        ..RequestSummary::default()
    };
    let scope = InstrumentationScope::builder("t").build();
    let built = spans(&summary, &t, &scope);
    assert_eq!(built.len(), 4, "request + three attempts with spans");
    let request = &built[0];
    assert_eq!(request.name, "chat m");
    assert_eq!(request.span_kind, SpanKind::Server);
    assert_eq!(request.parent_span_id, SpanId::INVALID);
    assert!(!request.parent_span_is_remote);
    assert_eq!(request.status, Status::Unset);
    assert_eq!(
        request.start_time,
        UNIX_EPOCH + Duration::from_millis(1_000)
    );
    assert_eq!(request.end_time, UNIX_EPOCH + Duration::from_millis(1_050));
    // Estimated tokens are not reported as usage.
    assert!(attr(request, "gen_ai.usage.input_tokens").is_none());
    assert_eq!(
        attr(request, "nines.usage_estimated"),
        Some(&opentelemetry::Value::Bool(true))
    );
    assert_eq!(
        attr(request, "gen_ai.provider.name").map(|v| v.as_str()),
        Some("anthropic".into())
    );

    let limited = &built[1];
    assert_eq!(limited.span_kind, SpanKind::Client);
    assert_eq!(limited.parent_span_id, t.span_id);
    assert!(!limited.parent_span_is_remote);
    assert_eq!(limited.name, "chat claude-x");
    assert!(matches!(limited.status, Status::Error { .. }));
    assert_eq!(
        attr(limited, "error.type").map(|v| v.as_str()),
        Some("rate_limited".into())
    );
    assert_eq!(
        attr(limited, "nines.retry_after_ms"),
        Some(&opentelemetry::Value::I64(2000))
    );
    assert_eq!(
        attr(limited, "server.port"),
        Some(&opentelemetry::Value::I64(8443))
    );
    assert_eq!(
        attr(limited, "server.address").map(|v| v.as_str()),
        Some("api.example.com".into())
    );
    assert_eq!(built[2].status, Status::Unset);
    let cancelled = &built[3];
    assert_eq!(cancelled.status, Status::Unset);
    assert!(attr(cancelled, "error.type").is_none());
    assert_eq!(
        attr(cancelled, "nines.attempt"),
        Some(&opentelemetry::Value::I64(3))
    );

    // A 4xx of the client's making is not a server failure; a 5xx is.
    let mut rejected = summary.clone();
    rejected.status = 429;
    rejected.outcome = "rate_limited".into();
    rejected.served = false;
    let spans_429 = spans(&rejected, &t, &scope);
    assert_eq!(spans_429[0].status, Status::Unset);
    assert!(attr(&spans_429[0], "error.type").is_none());
    let mut failed = summary;
    failed.status = 502;
    failed.outcome = "all_failed".into();
    failed.served = false;
    failed.detail = String::new();
    let spans_502 = spans(&failed, &t, &scope);
    assert_eq!(spans_502[0].status, Status::error("all_failed"));
    assert_eq!(
        attr(&spans_502[0], "error.type").map(|v| v.as_str()),
        Some("all_failed".into())
    );
    assert!(attr(&spans_502[0], "gen_ai.provider.name").is_none());
}

#[test]
fn a_client_parent_is_remote_and_unsampled_requests_are_not_queued() {
    let config = Config::parse(
        Path::new("t.toml"),
        "[[deployments]]\nname = \"d0\"\nprovider = \"openai\"\nmodel = \"x\"\napi_keys = [\"k\"]\n\n[[models]]\nname = \"m\"\ndeployments = [\"d0\"]\n\n[telemetry.otlp]\nendpoint = \"http://127.0.0.1:9\"\nsample_ratio = 0.0\n",
        &|_| None,
    )
    .unwrap();
    let tracer = Tracer::new(config.telemetry.otlp.as_ref().unwrap()).unwrap();
    let now = Instant::now();
    let client = tracer.start_request(Some(VALID), now);
    assert_eq!(client.parent.unwrap().to_string(), "00f067aa0ba902b7");
    assert!(client.sampled);
    let scope = InstrumentationScope::builder("t").build();
    let summary = RequestSummary {
        trace: Some(client),
        ..RequestSummary::default()
    };
    let request = &spans(&summary, &client, &scope)[0];
    assert!(request.parent_span_is_remote);
    assert_eq!(request.name, "chat", "no model: the operation alone");

    // Ratio 0 and no client trace: not sampled, so nothing is queued.
    let own = tracer.start_request(None, now);
    assert!(own.parent.is_none() && !own.sampled);
    tracer.export(&RequestSummary {
        trace: Some(own),
        ..RequestSummary::default()
    });
    assert_eq!(tracer.queue.capacity(), QUEUE_REQUESTS);
    tracer.export(&summary);
    assert_eq!(tracer.queue.capacity(), QUEUE_REQUESTS - 1);
}
