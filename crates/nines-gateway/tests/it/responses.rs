//! `POST /v1/responses` over real HTTP: served natively by OpenAI deployments (the body goes to
//! the upstream's `/v1/responses`), translated for Anthropic, Gemini and chat-only servers, with
//! the same failover as chat, before and after the commit point; built-in tools routed only to
//! deployments that run them; `previous_response_id` refused by a gateway that keeps nothing,
//! and continued from the store by one that keeps conversations (per key, across providers and
//! replicas).

use crate::harness::{Harness, error_of};
use nines_protocol::sse::{SseDecoder, SseEvent};
use serde_json::{Value, json};

/// d0 `openai` (native) on mock0, d1 `anthropic` on mock1, d2 `gemini` on mock2, d3
/// `openai-compatible` (chat only) on mock3. Models: one per deployment, `native-first`
/// (d0, d1), `anthropic-first` (d1, d0), `translated` (d1, d2), `gemini-then-anthropic` (d2, d1).
fn four() -> String {
    r#"
[server]
listen = "127.0.0.1:0"

[resilience.probes]
enabled = false

[[deployments]]
name = "d0"
provider = "openai"
model = "gpt-up"
base_url = "{mock0}"
api_keys = ["env:TEST_KEY"]
timeouts = { first_byte = "2s", idle = "2s", total = "10s" }

[[deployments]]
name = "d1"
provider = "anthropic"
model = "claude-up"
base_url = "{mock1}"
api_keys = ["env:TEST_KEY_2"]
timeouts = { first_byte = "2s", idle = "2s", total = "10s" }

[[deployments]]
name = "d2"
provider = "gemini"
model = "gemini-up"
base_url = "{mock2_root}"
api_keys = ["env:TEST_KEY"]
timeouts = { first_byte = "2s", idle = "2s", total = "10s" }

[[deployments]]
name = "d3"
provider = "openai-compatible"
model = "vllm-up"
base_url = "{mock3}"
api_keys = ["env:TEST_KEY"]

[[models]]
name = "native"
deployments = ["d0"]

[[models]]
name = "anthropic"
deployments = ["d1"]

[[models]]
name = "gemini"
deployments = ["d2"]

[[models]]
name = "chat-only"
deployments = ["d3"]

[[models]]
name = "native-first"
deployments = ["d0", "d1"]

[[models]]
name = "anthropic-first"
deployments = ["d1", "d0"]

[[models]]
name = "translated"
deployments = ["d1", "d2"]

[[models]]
name = "gemini-then-anthropic"
deployments = ["d2", "d1"]
"#
    .to_owned()
}

fn ask(model: &str) -> Value {
    json!({"model": model, "input": "Hello there", "instructions": "Be brief."})
}

fn streamed(model: &str) -> Value {
    let mut body = ask(model);
    body["stream"] = json!(true);
    body
}

fn tools() -> Value {
    json!([{"type": "function", "name": "get_weather", "description": "Weather now",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}])
}

async fn post(h: &Harness, body: &Value) -> reqwest::Response {
    h.post_json("/v1/responses", body).await
}

/// The named events of a whole SSE body.
async fn read_events(response: reqwest::Response) -> Vec<SseEvent> {
    let text = response.text().await.unwrap();
    let mut decoder = SseDecoder::new();
    let mut events = Vec::new();
    decoder.feed(text.as_bytes(), &mut events).unwrap();
    decoder.finish(&mut events);
    events
}

fn names(events: &[SseEvent]) -> Vec<&str> {
    events.iter().filter_map(|e| e.event.as_deref()).collect()
}

fn data(event: &SseEvent) -> Value {
    serde_json::from_str(&event.data).unwrap()
}

/// The text of a `response` object's message items.
fn output_text(response: &Value) -> String {
    response["output"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|item| item["type"] == "message")
        .flat_map(|item| item["content"].as_array().unwrap().iter())
        .filter_map(|part| part["text"].as_str())
        .collect()
}

/// A complete Responses stream: every event's `type` is its name, numbered from 0, no
/// `[DONE]`, ending with `response.completed`; returns the final response.
fn completed(events: &[SseEvent]) -> Value {
    let names = names(events);
    assert_eq!(names.first(), Some(&"response.created"), "{names:?}");
    assert_eq!(names.get(1), Some(&"response.in_progress"), "{names:?}");
    assert_eq!(names.last(), Some(&"response.completed"), "{names:?}");
    assert!(events.iter().all(|e| e.data != "[DONE]"));
    for (n, e) in events.iter().enumerate() {
        let v = data(e);
        assert_eq!(v["type"].as_str(), e.event.as_deref(), "{v}");
        assert_eq!(v["sequence_number"], n, "{v}");
    }
    data(events.last().unwrap())["response"].clone()
}

fn recorded(h: &Harness, mock: usize, route: &str) -> Value {
    let request = h
        .mock(mock)
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.route == route)
        .unwrap_or_else(|| panic!("no request on {route}"));
    serde_json::from_str(&request.body).unwrap()
}

#[tokio::test]
async fn an_openai_deployment_gets_the_clients_body_on_its_own_responses_endpoint() {
    let h = Harness::start(4, &four()).await;
    let mut body = ask("native");
    body["vendor_field"] = json!({"kept": true});
    let r = post(&h, &body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-nines-deployment"], "d0");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["object"], "response");
    assert_eq!(v["status"], "completed");
    assert!(v["id"].as_str().unwrap().starts_with("resp_"), "{v}");
    assert!(output_text(&v).starts_with("Hello from mock0!"), "{v}");
    assert!(v["usage"]["input_tokens"].as_u64().unwrap() > 0);
    assert_eq!(h.mock(0).hits("/v1/responses"), 1);
    assert_eq!(h.chat_hits(0), 0);
    let sent = recorded(&h, 0, "/v1/responses");
    assert_eq!(sent["model"], "gpt-up", "only model is rewritten");
    assert_eq!(sent["input"], "Hello there");
    assert_eq!(sent["instructions"], "Be brief.");
    assert_eq!(sent["vendor_field"], json!({"kept": true}));
}

#[tokio::test]
async fn a_native_stream_is_relayed_event_by_event_until_response_completed() {
    let h = Harness::start(4, &four()).await;
    let r = post(&h, &streamed("native")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let events = read_events(r).await;
    let response = completed(&events);
    assert!(output_text(&response).starts_with("Hello from mock0!"));
    let deltas: String = events
        .iter()
        .filter(|e| e.event.as_deref() == Some("response.output_text.delta"))
        .map(|e| data(e)["delta"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(deltas, output_text(&response));
}

#[tokio::test]
async fn anthropic_serves_a_translated_request_with_a_function_call_round_trip() {
    let h = Harness::start(4, &four()).await;
    let mut first = ask("anthropic");
    first["tools"] = tools();
    first["max_output_tokens"] = json!(300);
    let r = post(&h, &first).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-nines-deployment"], "d1");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["object"], "response");
    let call = v["output"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["type"] == "function_call")
        .unwrap_or_else(|| panic!("no function call: {v}"))
        .clone();
    assert_eq!(call["name"], "get_weather");
    assert_eq!(call["arguments"], r#"{"mock":true}"#);
    let sent = recorded(&h, 1, "/v1/messages");
    assert_eq!(
        sent["system"], "Be brief.",
        "instructions became the system prompt"
    );
    assert_eq!(sent["max_tokens"], 300);
    assert_eq!(sent["tools"][0]["name"], "get_weather");

    // The client answers the call; Anthropic gets a tool_use turn and its tool_result.
    let second = json!({
        "model": "anthropic",
        "tools": tools(),
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "Weather in Oslo?"}]},
            {"type": "function_call", "call_id": call["call_id"], "name": "get_weather",
             "arguments": call["arguments"]},
            {"type": "function_call_output", "call_id": call["call_id"], "output": "12C, rain"},
        ],
    });
    let r = post(&h, &second).await;
    assert_eq!(r.status(), 200);
    let first_id = v["id"].clone();
    let v: Value = r.json().await.unwrap();
    assert!(output_text(&v).starts_with("Hello from mock1!"), "{v}");
    assert!(v["id"].as_str().unwrap().starts_with("resp_"));
    assert_ne!(
        v["id"], first_id,
        "each translated response has an id of its own"
    );
    let sent = recorded(&h, 1, "/v1/messages");
    let messages = sent["messages"].as_array().unwrap();
    assert_eq!(messages[1]["content"][0]["type"], "tool_use");
    assert_eq!(messages[1]["content"][0]["id"], call["call_id"]);
    assert_eq!(messages[2]["content"][0]["type"], "tool_result");
    assert_eq!(messages[2]["content"][0]["tool_use_id"], call["call_id"]);
}

#[tokio::test]
async fn a_translated_stream_from_gemini_is_the_responses_lifecycle() {
    let h = Harness::start(4, &four()).await;
    let mut body = streamed("gemini");
    body["tools"] = tools();
    let r = post(&h, &body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-nines-deployment"], "d2");
    let events = read_events(r).await;
    let response = completed(&events);
    let names = names(&events);
    for expected in [
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
    ] {
        assert!(names.contains(&expected), "{expected} missing: {names:?}");
    }
    let call = &response["output"][0];
    assert_eq!(call["type"], "function_call", "{response}");
    assert_eq!(call["name"], "get_weather");
    assert_eq!(call["arguments"], r#"{"mock":true}"#);
    assert!(response["usage"]["output_tokens"].as_u64().unwrap() > 0);
    assert_eq!(
        h.mock(2)
            .hits("/v1beta/models/{model}:streamGenerateContent"),
        1
    );

    // Text, streamed: deltas then the done events carrying the whole text.
    let r = post(&h, &streamed("gemini")).await;
    let text_events = read_events(r).await;
    let response = completed(&text_events);
    let text = output_text(&response);
    assert!(text.starts_with("Hello from mock2!"), "{text}");
    let done = text_events
        .iter()
        .find(|e| e.event.as_deref() == Some("response.output_text.done"))
        .unwrap();
    assert_eq!(data(done)["text"], text);
}

#[tokio::test]
async fn a_chat_only_server_gets_a_chat_request_and_json_schema_and_effort_map() {
    let h = Harness::start(4, &four()).await;
    let mut body = ask("chat-only");
    body["text"] = json!({"format": {"type": "json_schema", "name": "w",
                                     "schema": {"type": "object"}, "strict": true}});
    body["reasoning"] = json!({"effort": "low"});
    let r = post(&h, &body).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["object"], "response");
    let answer: Value = serde_json::from_str(&output_text(&v)).unwrap();
    assert_eq!(answer, json!({"mock": true, "from": "mock3"}));
    assert_eq!(h.mock(3).hits("/v1/responses"), 0);
    let sent = recorded(&h, 3, "/v1/chat/completions");
    assert_eq!(sent["model"], "vllm-up");
    assert_eq!(
        sent["messages"][0],
        json!({"role": "system", "content": "Be brief."})
    );
    assert_eq!(sent["response_format"]["type"], "json_schema");
    assert_eq!(sent["response_format"]["json_schema"]["name"], "w");
    assert_eq!(sent["reasoning_effort"], "low");
    assert!(
        sent.get("input").is_none() && sent.get("text").is_none(),
        "{sent}"
    );
}

#[tokio::test]
async fn a_failing_native_deployment_fails_over_to_a_translated_one_and_back() {
    let h = Harness::start(4, &four()).await;
    h.fault(0, json!({"status": 503}));
    let r = post(&h, &ask("native-first")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-nines-deployment"], "d1");
    assert_eq!(r.headers()["x-nines-attempts"], "2");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["object"], "response");
    assert!(output_text(&v).starts_with("Hello from mock1!"), "{v}");
    assert_eq!(h.mock(0).hits("/v1/responses"), 1);
    assert_eq!(h.mock(1).hits("/v1/messages"), 1);

    // Streaming, the other way: Anthropic overloaded, the native stream serves.
    h.mock(0).set_fault(None);
    h.fault(1, json!({"status": 529}));
    let r = post(&h, &streamed("anthropic-first")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-nines-deployment"], "d0");
    let response = completed(&read_events(r).await);
    assert!(output_text(&response).starts_with("Hello from mock0!"));
}

#[tokio::test]
async fn a_translated_stream_that_breaks_after_the_commit_point_is_resumed_elsewhere() {
    // Equal mock names give equal replies, so a replayed continuation splices in.
    let h = Harness::start_named(&["mock", "mock", "mock", "mock"], &four()).await;
    // Anthropic cuts its stream after a few events; Gemini continues it (prefill is
    // Anthropic's, so Gemini replays and the reply's matching prefix is dropped).
    h.fault(1, json!({"reset_after_chunks": 5}));
    let r = post(&h, &streamed("translated")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-nines-deployment"], "d1");
    let events = read_events(r).await;
    let response = completed(&events);
    assert_eq!(
        output_text(&response),
        "Hello from mock! You said: Hello there"
    );
    let deltas: String = events
        .iter()
        .filter(|e| e.event.as_deref() == Some("response.output_text.delta"))
        .map(|e| data(e)["delta"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(deltas, output_text(&response), "each word once");
    assert_eq!(
        h.mock(2)
            .hits("/v1beta/models/{model}:streamGenerateContent"),
        1
    );
}

#[tokio::test]
async fn a_native_stream_that_breaks_ends_with_an_error_event_not_a_completed_response() {
    let h = Harness::start(4, &four()).await;
    h.fault(0, json!({"reset_after_chunks": 4}));
    let r = post(&h, &streamed("native")).await;
    assert_eq!(r.status(), 200);
    let events = read_events(r).await;
    let names = names(&events);
    assert_eq!(names.last(), Some(&"error"), "{names:?}");
    assert!(!names.contains(&"response.completed"));
    let error = data(events.last().unwrap());
    assert_eq!(error["code"], "stream_interrupted");
    assert_eq!(
        error["sequence_number"], 4,
        "numbered after the last event forwarded"
    );
}

#[tokio::test]
async fn built_in_tools_go_only_to_deployments_that_run_them() {
    let h = Harness::start(4, &four()).await;
    let mut body = ask("anthropic-first");
    body["tools"] = json!([{"type": "web_search"}]);
    let r = post(&h, &body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-nines-deployment"], "d0", "Anthropic skipped");
    assert_eq!(r.headers()["x-nines-attempts"], "1");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["output"][0]["type"], "web_search_call", "{v}");
    assert_eq!(h.mock(1).hits("/v1/messages"), 0);

    body["model"] = json!("translated");
    let r = post(&h, &body).await;
    assert_eq!(r.status(), 400);
    let error = error_of(r).await;
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("web_search") && message.contains("responses_api"),
        "{message}"
    );
    assert_eq!(
        h.mock(1).hits("/v1/messages") + h.mock(2).hits("/v1/responses"),
        0
    );
}

#[tokio::test]
async fn previous_response_id_is_refused_clearly_and_bad_input_is_a_400() {
    let h = Harness::start(4, &four()).await;
    let mut body = ask("native");
    body["previous_response_id"] = json!("resp_123");
    let r = post(&h, &body).await;
    assert_eq!(r.status(), 400);
    let error = error_of(r).await;
    assert_eq!(error["param"], "previous_response_id");
    assert!(
        error["message"].as_str().unwrap().contains("stateless"),
        "{error}"
    );
    assert_eq!(h.mock(0).hits("/v1/responses"), 0);

    let r = post(&h, &json!({"model": "native"})).await;
    assert_eq!(r.status(), 400);
    assert_eq!(error_of(r).await["param"], "input");

    let r = post(
        &h,
        &json!({"model": "anthropic", "input": [{"type": "function_call"}]}),
    )
    .await;
    assert_eq!(r.status(), 400);
    assert_eq!(error_of(r).await["param"], "input");

    let r = h
        .client
        .post(h.url("/v1/responses"))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    error_of(r).await;
    let hits: u64 = (0..4).map(|i| h.mock(i).hits("/v1/responses")).sum();
    assert_eq!(hits, 0, "no upstream call for a bad request");
}

const KEY_A: &str = "sk-nines-tenant-a-0123456789";
const KEY_B: &str = "sk-nines-tenant-b-0123456789";

/// [`four`] with two keys and `store` (the `[store]` section's location line).
fn kept(store: &str) -> String {
    format!(
        "{}\n[auth]\n[[auth.keys]]\nkey = \"{KEY_A}\"\nname = \"a\"\n\n[[auth.keys]]\nkey = \"{KEY_B}\"\nname = \"b\"\n\n[store]\n{store}\nkeep_responses = \"1h\"\n",
        four(),
    )
}

fn sqlite_in(dir: &std::path::Path) -> String {
    format!("data_dir = \"{}\"", dir.display())
}

async fn post_as(h: &Harness, key: &str, body: &Value) -> reqwest::Response {
    h.client
        .post(h.url("/v1/responses"))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn previous_response_id_continues_a_kept_conversation_on_any_provider() {
    let dir = std::env::temp_dir().join(format!("nines-responses-{}", uuid::Uuid::new_v4()));
    continue_conversations(&sqlite_in(&dir)).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn previous_response_id_on_a_postgres_store_when_database_url_is_set() {
    let Some(db) = crate::harness::fresh_postgres_database().await else {
        return;
    };
    continue_conversations(&format!("database_url = \"{}\"", db.url)).await;
    db.remove().await;
}

/// A conversation over four turns on three providers, continued by `previous_response_id` from
/// the store `store` names; per key; and from a second replica on the same store.
async fn continue_conversations(store: &str) {
    let h = Harness::start_opened(4, &kept(store)).await;

    // Turn 1, Anthropic: a function call.
    let mut first = ask("anthropic");
    first["tools"] = tools();
    let r = post_as(&h, KEY_A, &first).await;
    assert_eq!(r.status(), 200);
    let one: Value = r.json().await.unwrap();
    let call = one["output"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["type"] == "function_call")
        .unwrap()
        .clone();

    // Turn 2, Gemini: only the call's output; the conversation comes from the store.
    let second = json!({
        "model": "gemini",
        "previous_response_id": one["id"],
        "tools": tools(),
        "input": [{"type": "function_call_output", "call_id": call["call_id"], "output": "12C"}],
    });
    let r = post_as(&h, KEY_A, &second).await;
    assert_eq!(r.status(), 200);
    let two: Value = r.json().await.unwrap();
    assert!(output_text(&two).starts_with("Hello from mock2!"), "{two}");
    let sent = h
        .mock(2)
        .requests()
        .into_iter()
        .find(|r| r.route == "/v1beta/models/{model}:generateContent")
        .unwrap();
    let sent: Value = serde_json::from_str(&sent.body).unwrap();
    let contents = sent["contents"].as_array().unwrap();
    assert_eq!(contents.len(), 3, "{sent}");
    assert_eq!(contents[0]["parts"][0]["text"], "Hello there");
    assert_eq!(
        contents[1]["parts"][0]["functionCall"]["name"],
        "get_weather"
    );
    assert!(
        contents[2]["parts"][0].get("functionResponse").is_some(),
        "{sent}"
    );

    // Another key cannot continue it: the same answer as an id that does not exist.
    let mut stolen =
        json!({"model": "gemini", "input": "go on", "previous_response_id": two["id"]});
    let r = post_as(&h, KEY_B, &stolen).await;
    assert_eq!(r.status(), 400);
    let error = error_of(r).await;
    assert_eq!(error["param"], "previous_response_id");
    assert!(
        error["message"].as_str().unwrap().contains("not found"),
        "{error}"
    );

    // Turn 3, streamed, on the native deployment: the whole conversation in `input`, and no
    // `previous_response_id` (which OpenAI would look up in its own store).
    stolen["model"] = json!("native");
    stolen["stream"] = json!(true);
    let r = post_as(&h, KEY_A, &stolen).await;
    assert_eq!(r.status(), 200);
    let three = completed(&read_events(r).await);
    let sent = recorded(&h, 0, "/v1/responses");
    assert!(sent.get("previous_response_id").is_none(), "{sent}");
    let input = sent["input"].as_array().unwrap();
    let kinds: Vec<&str> = input
        .iter()
        .map(|i| i["type"].as_str().unwrap_or("message"))
        .collect();
    assert_eq!(
        kinds,
        [
            "message",
            "function_call",
            "function_call_output",
            "message",
            "message"
        ],
        "{sent}"
    );
    assert_eq!(input[4]["content"], "go on");

    // A second replica on the same store continues the streamed turn: the store has it.
    let replica = Harness::start_opened(4, &kept(store)).await;
    let fourth =
        json!({"model": "anthropic", "input": "and then?", "previous_response_id": three["id"]});
    let mut status = 0;
    for _ in 0..100 {
        let r = post_as(&replica, KEY_A, &fourth).await;
        status = r.status().as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(status, 200, "the store write never landed");
    let sent = recorded(&replica, 1, "/v1/messages");
    assert_eq!(sent["messages"].as_array().unwrap().len(), 7, "{sent}");
}

#[tokio::test]
async fn store_false_keeps_nothing() {
    let dir = std::env::temp_dir().join(format!("nines-responses-{}", uuid::Uuid::new_v4()));
    let h = Harness::start_opened(4, &kept(&sqlite_in(&dir))).await;
    let mut body = ask("anthropic");
    body["store"] = json!(false);
    let r = post_as(&h, KEY_A, &body).await;
    let one: Value = r.json().await.unwrap();
    let next = json!({"model": "anthropic", "input": "more", "previous_response_id": one["id"]});
    let r = post_as(&h, KEY_A, &next).await;
    assert_eq!(r.status(), 400);
    assert_eq!(error_of(r).await["param"], "previous_response_id");
    let _ = std::fs::remove_dir_all(&dir);
}
