//! Every dialect's stream decoder, through the relay that serves it to a client: the byte relay
//! (`relay::passthrough`) for an OpenAI stream to an OpenAI client, the translating relay
//! (`relay::translated`: SSE decoder, the upstream dialect's decoder, the client dialect's
//! encoder) for every other pair, and the transcript a resumable stream keeps.
//!
//! The first byte chooses: bits 0–1 the upstream dialect (OpenAI, Anthropic, Gemini,
//! Replicate), bit 2 the client's (OpenAI, Anthropic), bit 3 whether the upstream body ends in a
//! transport error rather than cleanly, bits 4–7 where the rest is cut into chunks (n² bytes
//! each; 0: one chunk). Properties: no panic; the relay reports exactly once; what a translating
//! relay writes decodes with the client dialect's own decoder; a stream is presented as complete
//! (`[DONE]`, `message_stop`) exactly when the relay reports it finished, and only at its end.
#![no_main]

use bytes::Bytes;
use futures_util::StreamExt;
use libfuzzer_sys::fuzz_target;
use nines_fuzz::{chunks, sse_events};
use nines_gateway::providers::{ByteStream, Endpoint};
use nines_gateway::relay::ending::{StreamEnd, StreamReport};
use nines_gateway::relay::resume::{Observed, Transcript};
use nines_gateway::relay::segment::Segment;
use nines_gateway::relay::codec::{Decoder, Encoder};
use nines_gateway::relay::{passthrough, translated};
use nines_gateway::resilience::OpenSlot;
use nines_protocol::unified::Dialect;
use nines_protocol::{anthropic, openai};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const UPSTREAMS: [Dialect; 4] = [
    Dialect::OpenAi,
    Dialect::Anthropic,
    Dialect::Gemini,
    Dialect::Replicate,
];

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        match tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
        {
            Ok(runtime) => runtime,
            Err(e) => panic!("no runtime: {e}"),
        }
    })
}

fuzz_target!(|input: &[u8]| {
    let Some((&select, data)) = input.split_first() else {
        return;
    };
    let upstream = UPSTREAMS[usize::from(select & 3)];
    let client = if select & 4 == 0 {
        Dialect::OpenAi
    } else {
        Dialect::Anthropic
    };
    let broken = select & 8 != 0;
    let size = usize::from(select >> 4).pow(2);
    let parts: Vec<Bytes> = chunks(data, size)
        .into_iter()
        .map(Bytes::copy_from_slice)
        .collect();

    let (out, report) = runtime().block_on(relay(upstream, client, parts, broken));
    let reports = report.lock().map(|r| r.len()).unwrap_or(0);
    assert_eq!(reports, 1, "the relay reported {reports} times");
    let end = report.lock().ok().and_then(|mut r| r.pop()).map(|r| r.end);
    let finished = matches!(end, Some(StreamEnd::Done | StreamEnd::FinishedWithoutDone));

    let events = sse_events(&out);
    let passthrough = upstream == Dialect::OpenAi && client == Dialect::OpenAi;
    match client {
        Dialect::Anthropic => {
            let mut decoder = anthropic::StreamDecoder::new();
            let mut unified = Vec::new();
            for (i, event) in events.iter().enumerate() {
                decoder.feed_sse(event, &mut unified).unwrap_or_else(|e| {
                    panic!("nines' Anthropic stream event {i} does not decode: {e}")
                });
                if event.event.as_deref() == Some("message_stop") {
                    assert_eq!(i + 1, events.len(), "message_stop before the end");
                }
            }
            assert_eq!(
                decoder.is_done(),
                finished,
                "complete only if finished ({end:?})"
            );
        }
        _ => {
            let mut decoder = openai::ChunkDecoder::new();
            let mut unified = Vec::new();
            for (i, event) in events.iter().enumerate() {
                if event.is_done() {
                    assert_eq!(i + 1, events.len(), "[DONE] before the end");
                    continue;
                }
                if !passthrough {
                    decoder.feed(&event.data, &mut unified).unwrap_or_else(|e| {
                        panic!("nines' OpenAI stream event {i} does not decode: {e}")
                    });
                }
            }
            let done = events.last().is_some_and(|e| e.is_done());
            assert_eq!(done, finished, "[DONE] only if finished ({end:?})");
        }
    }

    if upstream == Dialect::OpenAi {
        // What a resumable relay learns of the same events, first as the original stream and
        // then as a continuation.
        let mut transcript = Transcript::default();
        for (i, event) in sse_events(data).iter().enumerate() {
            if event.is_done() {
                continue;
            }
            if let Observed::Forward {
                rewritten: Some(rewritten),
                ..
            } = transcript.observe(&event.data, i % 2 == 1)
            {
                if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&rewritten) {
                    panic!("a rewritten continuation chunk is not JSON: {e}");
                }
            }
        }
    }
});

type Reports = Arc<Mutex<Vec<StreamReport>>>;

async fn relay(
    upstream: Dialect,
    client: Dialect,
    mut parts: Vec<Bytes>,
    broken: bool,
) -> (Vec<u8>, Reports) {
    let head = if parts.is_empty() {
        Bytes::new()
    } else {
        parts.remove(0)
    };
    let mut items: Vec<Result<Bytes, nines_gateway::providers::BodyError>> =
        parts.into_iter().map(Ok).collect();
    if broken {
        items.push(Err("connection reset".into()));
    }
    let rest: ByteStream = futures_util::stream::iter(items).boxed();
    let segment = Segment {
        head,
        rest,
        idle: Duration::from_secs(3600),
        slot: OpenSlot::new(None, None),
    };
    let reports: Reports = Arc::default();
    let on_end = {
        let reports = Arc::clone(&reports);
        move |report: StreamReport| {
            if let Ok(mut r) = reports.lock() {
                r.push(report);
            }
        }
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3600);
    let cut = CancellationToken::new();
    let mut stream = if upstream == Dialect::OpenAi && client == Dialect::OpenAi {
        passthrough::relay(segment, deadline, cut, None, on_end)
    } else {
        let Some(decoder) = Decoder::for_dialect(upstream, "pred-1", "model") else {
            return (Vec::new(), reports);
        };
        let encoder = Encoder::for_client(client, Endpoint::ChatCompletions, "model", true);
        translated::relay(segment, (decoder, encoder), deadline, cut, None, on_end)
    };
    let mut out = Vec::new();
    while let Some(Ok(bytes)) = stream.next().await {
        out.extend_from_slice(&bytes);
    }
    drop(stream);
    (out, reports)
}
