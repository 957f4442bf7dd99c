//! OpenTelemetry traces over OTLP/HTTP: an in-test collector on port 0 receives what the gateway
//! exports (JSON decoded with serde_json, protobuf with opentelemetry-proto), and the mocks'
//! recorded headers show the `traceparent` each attempt carried.

use crate::harness::{Harness, chain, hello, sse_data};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use nines_gateway::AppState;
use prost::Message;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";
const SERVER: i64 = 2;
const CLIENT: i64 = 3;
const STATUS_UNSET: i64 = 0;
const STATUS_ERROR: i64 = 2;

/// One exported span, whichever the protocol.
#[derive(Debug, Clone)]
struct Span {
    service: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    name: String,
    kind: i64,
    attrs: BTreeMap<String, String>,
    status_code: i64,
    start: u64,
    end: u64,
}

impl Span {
    fn attr(&self, key: &str) -> Option<&str> {
        self.attrs.get(key).map(String::as_str)
    }
}

/// One `POST /v1/traces` as the collector got it.
#[derive(Debug, Clone)]
struct Export {
    headers: HeaderMap,
    body: Bytes,
}

/// A minimal OTLP/HTTP collector: records every export and answers 200.
struct Collector {
    addr: SocketAddr,
    exports: Arc<Mutex<Vec<Export>>>,
}

impl Collector {
    async fn start() -> Collector {
        let exports: Arc<Mutex<Vec<Export>>> = Arc::default();
        let app = axum::Router::new()
            .route(
                "/v1/traces",
                post(
                    |State(exports): State<Arc<Mutex<Vec<Export>>>>,
                     headers: HeaderMap,
                     body: Bytes| async move {
                        let json = headers
                            .get("content-type")
                            .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
                        exports.lock().unwrap().push(Export { headers, body });
                        // An empty ExportTraceServiceResponse: full success.
                        let (content_type, body) = if json {
                            ("application/json", "{}")
                        } else {
                            ("application/x-protobuf", "")
                        };
                        (StatusCode::OK, [("content-type", content_type)], body)
                    },
                ),
            )
            .with_state(Arc::clone(&exports));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Collector { addr, exports }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn exports(&self) -> Vec<Export> {
        self.exports.lock().unwrap().clone()
    }

    fn spans(&self) -> Vec<Span> {
        self.exports().iter().flat_map(decode).collect()
    }

    /// Waits (bounded) until at least `n` spans arrived, then returns them all.
    async fn wait_for_spans(&self, n: usize, within: Duration) -> Vec<Span> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let spans = self.spans();
            if spans.len() >= n {
                return spans;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} spans within {within:?}, wanted {n}: {spans:#?}",
                spans.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn decode(export: &Export) -> Vec<Span> {
    let content_type = export.headers["content-type"].to_str().unwrap();
    match content_type {
        "application/json" => decode_json(&serde_json::from_slice(&export.body).unwrap()),
        "application/x-protobuf" => decode_protobuf(&export.body),
        other => panic!("unexpected content-type {other}"),
    }
}

/// OTLP/JSON as the spec writes it: ids as hex strings, 64-bit integers as strings, enums as
/// numbers.
fn decode_json(body: &Value) -> Vec<Span> {
    fn number(v: &Value) -> i64 {
        v.as_i64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            .unwrap_or(0)
    }
    fn text(v: &Value) -> String {
        if let Some(s) = v.get("stringValue").and_then(Value::as_str) {
            return s.to_owned();
        }
        if let Some(i) = v.get("intValue") {
            return number(i).to_string();
        }
        if let Some(b) = v.get("boolValue").and_then(Value::as_bool) {
            return b.to_string();
        }
        panic!("unexpected attribute value {v}");
    }
    fn attrs(list: &Value) -> BTreeMap<String, String> {
        list.as_array()
            .into_iter()
            .flatten()
            .map(|kv| (kv["key"].as_str().unwrap().to_owned(), text(&kv["value"])))
            .collect()
    }
    let mut out = Vec::new();
    for resource in body["resourceSpans"].as_array().unwrap() {
        let service = attrs(&resource["resource"]["attributes"])
            .remove("service.name")
            .unwrap_or_default();
        for scope in resource["scopeSpans"].as_array().unwrap() {
            for s in scope["spans"].as_array().unwrap() {
                out.push(Span {
                    service: service.clone(),
                    trace_id: s["traceId"].as_str().unwrap().to_owned(),
                    span_id: s["spanId"].as_str().unwrap().to_owned(),
                    parent_span_id: s["parentSpanId"].as_str().unwrap_or("").to_owned(),
                    name: s["name"].as_str().unwrap().to_owned(),
                    kind: number(&s["kind"]),
                    attrs: attrs(&s["attributes"]),
                    status_code: s.get("status").map_or(0, |st| number(&st["code"])),
                    start: number(&s["startTimeUnixNano"]) as u64,
                    end: number(&s["endTimeUnixNano"]) as u64,
                });
            }
        }
    }
    out
}

fn decode_protobuf(body: &[u8]) -> Vec<Span> {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
    fn attrs(list: &[KeyValue]) -> BTreeMap<String, String> {
        list.iter()
            .map(|kv| {
                let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(any_value::Value::StringValue(s)) => s.clone(),
                    Some(any_value::Value::IntValue(i)) => i.to_string(),
                    Some(any_value::Value::BoolValue(b)) => b.to_string(),
                    other => panic!("unexpected attribute value {other:?}"),
                };
                (kv.key.clone(), value)
            })
            .collect()
    }
    let request = ExportTraceServiceRequest::decode(body).unwrap();
    let mut out = Vec::new();
    for resource in &request.resource_spans {
        let service = resource
            .resource
            .as_ref()
            .map(|r| attrs(&r.attributes))
            .and_then(|mut a| a.remove("service.name"))
            .unwrap_or_default();
        for scope in &resource.scope_spans {
            for s in &scope.spans {
                out.push(Span {
                    service: service.clone(),
                    trace_id: hex(&s.trace_id),
                    span_id: hex(&s.span_id),
                    parent_span_id: hex(&s.parent_span_id),
                    name: s.name.clone(),
                    kind: i64::from(s.kind),
                    attrs: attrs(&s.attributes),
                    status_code: s.status.as_ref().map_or(0, |st| i64::from(st.code)),
                    start: s.start_time_unix_nano,
                    end: s.end_time_unix_nano,
                });
            }
        }
    }
    out
}

/// `[telemetry.otlp]` pointing at `collector`.
fn otlp(collector: &Collector, protocol: &str, extra: &str) -> String {
    format!(
        "\n[telemetry.otlp]\nendpoint = \"{}\"\nprotocol = \"{protocol}\"\nservice_name = \"nines-test\"\n{extra}\n",
        collector.url()
    )
}

/// The `traceparent` values mock `i` received, in order.
fn traceparents(h: &Harness, i: usize) -> Vec<String> {
    h.mock(i)
        .requests()
        .iter()
        .map(|r| {
            r.headers
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case("traceparent"))
                .map(|(_, v)| v.clone())
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect()
}

/// `(trace id, parent id, flags)` of a traceparent.
fn parts(traceparent: &str) -> (&str, &str, &str) {
    let p: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(p.len(), 4, "{traceparent}");
    assert_eq!(p[0], "00", "{traceparent}");
    (p[1], p[2], p[3])
}

fn by_attempt(spans: &[Span]) -> (Span, Vec<Span>) {
    let servers: Vec<&Span> = spans.iter().filter(|s| s.kind == SERVER).collect();
    assert_eq!(servers.len(), 1, "one request span: {spans:#?}");
    let mut attempts: Vec<Span> = spans.iter().filter(|s| s.kind == CLIENT).cloned().collect();
    assert_eq!(
        attempts.len() + 1,
        spans.len(),
        "only request and attempt spans"
    );
    attempts.sort_by_key(|s| s.attr("nines.attempt").unwrap().parse::<u32>().unwrap());
    (servers[0].clone(), attempts)
}

/// Starts the harness keeping a handle on its state (to flush the exporter).
async fn start_keeping_state(mocks: usize, config: &str) -> (Harness, Arc<AppState>) {
    let mut kept = None;
    let h = Harness::start_with(mocks, config, |runtime| {
        let state = AppState::new(runtime);
        kept = Some(Arc::clone(&state));
        std::future::ready(state)
    })
    .await;
    (h, kept.unwrap())
}

async fn flush(state: &AppState) {
    let tracer = state.telemetry.tracer.as_ref().expect("tracing is on");
    assert!(tracer.flush(Duration::from_secs(10)).await, "flushed");
}

#[tokio::test]
async fn failover_exports_a_request_span_and_one_span_per_attempt_in_the_clients_trace() {
    let collector = Collector::start().await;
    let config = chain(2) + &otlp(&collector, "http/json", "");
    let h = Harness::start(2, &config).await;
    h.fault(0, json!({"status": 500}));

    let response = h
        .client
        .post(h.url("/v1/chat/completions"))
        .header("traceparent", format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"))
        .json(&hello("chat"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-nines-deployment"], "d1");
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = response.json().await.unwrap();
    let tokens_in = body["usage"]["prompt_tokens"].as_u64().unwrap();
    let tokens_out = body["usage"]["completion_tokens"].as_u64().unwrap();
    assert!(tokens_in > 0 && tokens_out > 0, "{body}");
    assert_eq!((h.chat_hits(0), h.chat_hits(1)), (1, 1));

    // Exported in the background: no flush, just a bounded wait.
    let spans = collector.wait_for_spans(3, Duration::from_secs(10)).await;
    assert_eq!(spans.len(), 3, "{spans:#?}");
    assert_eq!(collector.exports().len(), 1, "one batch");
    let (request, attempts) = by_attempt(&spans);
    let (failed, served) = (&attempts[0], &attempts[1]);

    // One trace, the client's; the request span is the client span's child, attempts its.
    for s in &spans {
        assert_eq!(s.trace_id, CLIENT_TRACE, "{s:#?}");
        assert_eq!(s.service, "nines-test");
        assert!(s.start <= s.end, "{s:#?}");
    }
    assert_eq!(request.parent_span_id, CLIENT_SPAN);
    assert_ne!(request.span_id, CLIENT_SPAN);
    assert_eq!(failed.parent_span_id, request.span_id);
    assert_eq!(served.parent_span_id, request.span_id);
    assert_ne!(failed.span_id, served.span_id);
    // Times nest: the attempts run one after the other inside the request.
    assert!(request.start <= failed.start, "{spans:#?}");
    assert!(failed.end <= served.start, "{spans:#?}");
    assert!(served.end <= request.end, "{spans:#?}");

    // The request span.
    assert_eq!(request.name, "chat chat");
    for (key, value) in [
        ("gen_ai.operation.name", "chat"),
        ("gen_ai.request.model", "chat"),
        ("gen_ai.response.model", "up-model-1"),
        ("gen_ai.provider.name", "openai_compatible"),
        ("nines.route", "chat"),
        ("nines.deployment", "d1"),
        ("nines.fell_back", "true"),
        ("nines.attempts", "2"),
        ("nines.outcome", "ok"),
        ("nines.stream", "false"),
        ("http.response.status_code", "200"),
    ] {
        assert_eq!(request.attr(key), Some(value), "{key}: {request:#?}");
    }
    assert_eq!(request.attr("nines.request_id"), Some(request_id.as_str()));
    assert_eq!(
        request.attr("gen_ai.usage.input_tokens"),
        Some(tokens_in.to_string().as_str())
    );
    assert_eq!(
        request.attr("gen_ai.usage.output_tokens"),
        Some(tokens_out.to_string().as_str())
    );
    assert_eq!(request.attr("error.type"), None);
    assert_eq!(request.status_code, STATUS_UNSET);

    // The failed attempt.
    assert_eq!(failed.name, "chat up-model-0");
    for (key, value) in [
        ("gen_ai.operation.name", "chat"),
        ("gen_ai.provider.name", "openai_compatible"),
        ("gen_ai.request.model", "up-model-0"),
        ("nines.deployment", "d0"),
        ("nines.key_slot", "d0#0"),
        ("nines.attempt", "1"),
        ("nines.failure_class", "server"),
        ("error.type", "server"),
        ("http.response.status_code", "500"),
        ("server.address", "127.0.0.1"),
    ] {
        assert_eq!(failed.attr(key), Some(value), "{key}: {failed:#?}");
    }
    assert_eq!(failed.attr("gen_ai.response.model"), None);
    assert_eq!(failed.attr("gen_ai.usage.input_tokens"), None);
    assert_eq!(failed.status_code, STATUS_ERROR);

    // The serving attempt.
    assert_eq!(served.name, "chat up-model-1");
    for (key, value) in [
        ("gen_ai.request.model", "up-model-1"),
        ("gen_ai.response.model", "up-model-1"),
        ("nines.deployment", "d1"),
        ("nines.key_slot", "d1#0"),
        ("nines.attempt", "2"),
        ("nines.failure_class", "ok"),
        ("http.response.status_code", "200"),
    ] {
        assert_eq!(served.attr(key), Some(value), "{key}: {served:#?}");
    }
    assert_eq!(
        served.attr("gen_ai.usage.input_tokens"),
        Some(tokens_in.to_string().as_str())
    );
    assert_eq!(
        served.attr("gen_ai.usage.output_tokens"),
        Some(tokens_out.to_string().as_str())
    );
    assert_eq!(served.attr("error.type"), None);
    assert_eq!(served.status_code, STATUS_UNSET);

    // Each upstream request named its own attempt's span as the parent.
    assert_eq!(
        traceparents(&h, 0),
        vec![format!("00-{CLIENT_TRACE}-{}-01", failed.span_id)]
    );
    assert_eq!(
        traceparents(&h, 1),
        vec![format!("00-{CLIENT_TRACE}-{}-01", served.span_id)]
    );
}

#[tokio::test]
async fn with_tracing_off_the_clients_traceparent_reaches_upstream_unchanged() {
    let h = Harness::start(2, &chain(2)).await;
    h.fault(0, json!({"status": 500, "times": 1}));
    // Unsampled, so a gateway that rewrote it would have to change the flags or the parent.
    let sent = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-00");
    let response = h
        .client
        .post(h.url("/v1/chat/completions"))
        .header("traceparent", &sent)
        .json(&hello("chat"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-nines-attempts"], "2");
    // Both attempts carry it as it came.
    assert_eq!(traceparents(&h, 0), vec![sent.clone()]);
    assert_eq!(traceparents(&h, 1), vec![sent.clone()]);

    // Without one, none is added.
    let response = h.chat(&hello("chat")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-nines-deployment"], "d0");
    assert_eq!(traceparents(&h, 0), vec![sent, String::new()]);
}

#[tokio::test]
async fn a_stream_without_client_trace_starts_a_trace_exported_as_protobuf_on_flush() {
    let collector = Collector::start().await;
    let config = chain(1)
        + &otlp(
            &collector,
            "http/protobuf",
            "sample_ratio = 1.0\nheaders = { \"x-collector-token\" = \"env:TEST_KEY\" }",
        );
    let (h, state) = start_keeping_state(1, &config).await;
    let response = h
        .chat(&json!({
            "model": "chat",
            "stream": true,
            "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": "Hello there"}],
        }))
        .await;
    assert_eq!(response.status(), 200);
    let events = sse_data(response).await;
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let usage = events
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .find_map(|v| v.get("usage").filter(|u| !u.is_null()).cloned())
        .expect("a usage chunk");

    // A stream's spans are exported when it ends; a flush sends them at once.
    flush(&state).await;
    let exports = collector.exports();
    assert_eq!(exports.len(), 1);
    assert_eq!(exports[0].headers["content-type"], "application/x-protobuf");
    assert_eq!(
        exports[0].headers["x-collector-token"],
        "sk-upstream-secret-0001"
    );
    let spans = collector.spans();
    assert_eq!(spans.len(), 2, "{spans:#?}");
    let (request, attempts) = by_attempt(&spans);
    let attempt = &attempts[0];

    // A new trace: the request span is its root, and the upstream saw the attempt as parent.
    let sent = traceparents(&h, 0);
    assert_eq!(sent.len(), 1);
    let (trace_id, parent_id, flags) = parts(&sent[0]);
    assert_eq!(flags, "01");
    assert_eq!(request.trace_id, trace_id);
    assert_eq!(attempt.trace_id, trace_id);
    assert_ne!(trace_id, "0".repeat(32));
    assert_eq!(request.parent_span_id, "", "a root span");
    assert_eq!(attempt.parent_span_id, request.span_id);
    assert_eq!(attempt.span_id, parent_id);
    assert_eq!(request.service, "nines-test");

    assert_eq!(request.attr("nines.stream"), Some("true"));
    assert_eq!(request.attr("nines.fell_back"), Some("false"));
    assert_eq!(
        request.attr("gen_ai.provider.name"),
        Some("openai_compatible")
    );
    assert_eq!(attempt.attr("nines.failure_class"), Some("ok"));
    for s in [&request, attempt] {
        assert_eq!(
            s.attr("gen_ai.usage.input_tokens"),
            Some(usage["prompt_tokens"].to_string().as_str()),
            "{s:#?}"
        );
        assert_eq!(
            s.attr("gen_ai.usage.output_tokens"),
            Some(usage["completion_tokens"].to_string().as_str()),
            "{s:#?}"
        );
    }
}

#[tokio::test]
async fn sampling_follows_the_clients_flag_else_the_ratio_and_ids_propagate_either_way() {
    let collector = Collector::start().await;
    let config = chain(1) + &otlp(&collector, "http/json", "sample_ratio = 0.0");
    let (h, state) = start_keeping_state(1, &config).await;
    let send = |traceparent: Option<String>| {
        let mut request = h
            .client
            .post(h.url("/v1/chat/completions"))
            .json(&hello("chat"));
        if let Some(t) = traceparent {
            request = request.header("traceparent", t);
        }
        request.send()
    };

    // The client's unsampled trace: not exported, still propagated (flags 00, our span as
    // parent).
    let response = send(Some(format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-00")))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // No client trace and ratio 0: a new trace, not sampled.
    assert_eq!(send(None).await.unwrap().status(), 200);
    // A malformed traceparent counts as none (uppercase hex is invalid).
    let upper = format!("00-{}-{CLIENT_SPAN}-01", CLIENT_TRACE.to_uppercase());
    assert_eq!(send(Some(upper)).await.unwrap().status(), 200);
    // The client's sampled trace wins over the ratio.
    let sampled_trace = "0af7651916cd43dd8448eb211c80319c";
    let response = send(Some(format!("00-{sampled_trace}-b7ad6b7169203331-01")))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let sent = traceparents(&h, 0);
    assert_eq!(sent.len(), 4);
    let (t0, p0, f0) = parts(&sent[0]);
    assert_eq!((t0, f0), (CLIENT_TRACE, "00"));
    assert_ne!(p0, CLIENT_SPAN);
    assert_eq!(p0.len(), 16);
    let (t1, _, f1) = parts(&sent[1]);
    assert_eq!(f1, "00");
    assert_ne!(t1, CLIENT_TRACE);
    let (t2, _, f2) = parts(&sent[2]);
    assert_eq!(f2, "00");
    assert_ne!(t2.to_uppercase(), CLIENT_TRACE.to_uppercase());
    let (t3, p3, f3) = parts(&sent[3]);
    assert_eq!((t3, f3), (sampled_trace, "01"));

    flush(&state).await;
    let spans = collector.spans();
    assert_eq!(spans.len(), 2, "only the sampled request: {spans:#?}");
    let (request, attempts) = by_attempt(&spans);
    assert_eq!(request.trace_id, sampled_trace);
    assert_eq!(request.parent_span_id, "b7ad6b7169203331");
    assert_eq!(attempts[0].span_id, p3);
}
