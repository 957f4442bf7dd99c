//! The SSE decoder (`nines_protocol::sse`): any bytes, cut anywhere.
//!
//! Properties: no panic; the events do not depend on where the stream was cut (the first two
//! bytes choose two cut points); and re-encoding the events (`event:` and one `data:` line per
//! line of data) decodes to the same events.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nines_fuzz::sse_events;
use nines_protocol::sse::{SseDecoder, SseEvent, data_frame};

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
        decoder.feed(part, &mut cut);
    }
    decoder.finish(&mut cut);
    assert_eq!(whole, cut, "cut at {a} and {b}");

    // Byte by byte, with the mid-event flag checked on the way.
    let mut decoder = SseDecoder::new();
    let mut bytes = Vec::new();
    for byte in data {
        decoder.feed(std::slice::from_ref(byte), &mut bytes);
    }
    decoder.finish(&mut bytes);
    assert!(!decoder.is_mid_event());
    assert_eq!(whole, bytes, "byte by byte");

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
