//! The SSE decoder (`nines_protocol::sse`): any bytes, cut anywhere.
//!
//! Properties: no panic; the events do not depend on where the stream was cut (the first two
//! bytes choose two cut points); re-encoding the events (`event:` and one `data:` line per line
//! of data) decodes to the same events; and with an event limit small enough to be reached (the
//! first byte chooses it), whether the decoder overflows does not depend on the cuts either, the
//! events before an overflow are the unlimited decoder's first ones, and without an overflow
//! they are all of them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nines_fuzz::sse_events;
use nines_protocol::sse::{Overflow, SseDecoder, SseEvent, data_frame};

fuzz_target!(|input: &[u8]| {
    let (cuts, data) = input.split_at(input.len().min(2));
    let whole = sse_events(data);

    let a = cuts
        .first()
        .map_or(0, |&c| usize::from(c) % (data.len() + 1));
    let b = cuts
        .get(1)
        .map_or(0, |&c| usize::from(c) % (data.len() + 1));
    let (a, b) = (a.min(b), a.max(b));
    let mut decoder = SseDecoder::new();
    let mut cut = Vec::new();
    for part in [&data[..a], &data[a..b], &data[b..]] {
        decoder.feed(part, &mut cut).unwrap();
    }
    decoder.finish(&mut cut);
    assert_eq!(whole, cut, "cut at {a} and {b}");

    // Byte by byte, with the mid-event flag checked on the way.
    let mut decoder = SseDecoder::new();
    let mut bytes = Vec::new();
    for byte in data {
        decoder
            .feed(std::slice::from_ref(byte), &mut bytes)
            .unwrap();
    }
    decoder.finish(&mut bytes);
    assert!(!decoder.is_mid_event());
    assert_eq!(whole, bytes, "byte by byte");

    let limit = cuts.first().map_or(0, |&c| usize::from(c) % 64);
    let limited = decode_limited(limit, &[data]);
    let cut_limited = decode_limited(limit, &[&data[..a], &data[a..b], &data[b..]]);
    assert_eq!(limited, cut_limited, "limit {limit}, cut at {a} and {b}");
    let byte_limited = decode_limited(limit, &data.chunks(1).collect::<Vec<_>>());
    assert_eq!(limited, byte_limited, "limit {limit}, byte by byte");
    match limited {
        (events, None) => assert_eq!(events, whole, "no overflow at limit {limit}"),
        (events, Some(_)) => assert!(whole.starts_with(&events), "overflow at limit {limit}"),
    }

    let mut encoded = Vec::new();
    for event in &whole {
        encoded.extend_from_slice(&encode(event));
    }
    assert_eq!(sse_events(&encoded), whole, "re-encoded");
});

fn encode(event: &SseEvent) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(name) = &event.event {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.push(b'\n');
    }
    let mut lines = event.data.split('\n');
    if let Some(first) = lines.next() {
        // `data_frame` is what nines writes for one-line data.
        let frame = data_frame(first.as_bytes());
        out.extend_from_slice(&frame[..frame.len() - 1]);
    }
    for line in lines {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
    out
}

/// The events of `parts` fed to a decoder limited to `limit` bytes, and its overflow if any.
fn decode_limited(limit: usize, parts: &[&[u8]]) -> (Vec<SseEvent>, Option<Overflow>) {
    let mut decoder = SseDecoder::with_limit(limit);
    let mut out = Vec::new();
    let mut overflow = None;
    for part in parts {
        if let Err(e) = decoder.feed(part, &mut out) {
            overflow.get_or_insert(e);
        }
    }
    decoder.finish(&mut out);
    (out, overflow)
}
