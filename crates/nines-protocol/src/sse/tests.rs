use super::*;

fn decode_all(parts: &[&[u8]]) -> Vec<SseEvent> {
    let mut decoder = SseDecoder::new();
    let mut out = Vec::new();
    for part in parts {
        decoder.feed(part, &mut out);
    }
    decoder.finish(&mut out);
    out
}

const STREAM: &[u8] = b": keep-alive\n\ndata: {\"a\":\"h\xc3\xa9\"}\n\nevent: error\r\ndata: line1\r\ndata: line2\r\n\r\ndata:[DONE]\n\n";

fn expected() -> Vec<SseEvent> {
    vec![
        SseEvent {
            event: None,
            data: "{\"a\":\"h\u{e9}\"}".into(),
        },
        SseEvent {
            event: Some("error".into()),
            data: "line1\nline2".into(),
        },
        SseEvent {
            event: None,
            data: "[DONE]".into(),
        },
    ]
}

#[test]
fn decodes_whole_stream() {
    let events = decode_all(&[STREAM]);
    assert_eq!(events, expected());
    assert!(events[2].is_done());
}

#[test]
fn every_split_point_gives_the_same_events() {
    for i in 0..=STREAM.len() {
        for j in i..=STREAM.len() {
            let events = decode_all(&[&STREAM[..i], &STREAM[i..j], &STREAM[j..]]);
            assert_eq!(events, expected(), "split at {i},{j}");
        }
    }
}

#[test]
fn unterminated_last_event_is_dispatched_at_finish() {
    assert_eq!(
        decode_all(&[b"data: x"]),
        vec![SseEvent {
            event: None,
            data: "x".into()
        }]
    );
}

#[test]
fn lone_cr_line_endings() {
    assert_eq!(decode_all(&[b"data: a\r\rdata: b\r\r"]).len(), 2);
}

#[test]
fn encodes_frames() {
    assert_eq!(&data_frame(b"{}")[..], b"data: {}\n\n");
}
