use super::*;

fn decode_all(parts: &[&[u8]]) -> Vec<SseEvent> {
    let mut decoder = SseDecoder::new();
    let mut out = Vec::new();
    for part in parts {
        decoder.feed(part, &mut out).unwrap();
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

/// Feeds `parts` to a decoder limited to `limit` bytes: the events, and the overflow if any.
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

fn data_event(data: &str) -> SseEvent {
    SseEvent {
        event: None,
        data: data.into(),
    }
}

#[test]
fn an_endless_line_overflows_frees_what_it_held_and_drops_the_rest() {
    let mut decoder = SseDecoder::with_limit(64);
    let mut out = Vec::new();
    decoder.feed(b"data: small\n\ndata: ", &mut out).unwrap();
    let filler = [b'x'; 10];
    // 6 bytes of `data: ` held, then 10 per chunk: the sixth chunk makes 66 > 64.
    for _ in 0..5 {
        decoder.feed(&filler, &mut out).unwrap();
    }
    let overflow = decoder.feed(&filler, &mut out).unwrap_err();
    assert_eq!(overflow, Overflow { limit: 64 });
    assert_eq!(overflow.to_string(), "upstream event over 64 bytes");
    assert_eq!(decoder.line.capacity(), 0, "the line is freed");
    assert!(!decoder.is_mid_event());
    // Everything after the overflow is dropped, even a sound event, and says so again.
    assert_eq!(decoder.feed(b"\n\ndata: late\n\n", &mut out), Err(overflow));
    decoder.finish(&mut out);
    assert_eq!(out, [data_event("small")]);
}

#[test]
fn an_endless_event_of_short_lines_overflows() {
    let mut stream = b"event: first\ndata: a\n\n".to_vec();
    // Short lines, none near the limit, and never the blank line that would end the event.
    for _ in 0..20 {
        stream.extend_from_slice(b"data: 0123456789\n");
    }
    let (events, overflow) = decode_limited(100, &[&stream]);
    assert_eq!(overflow, Some(Overflow { limit: 100 }));
    assert_eq!(
        events,
        [SseEvent {
            event: Some("first".into()),
            data: "a".into()
        }]
    );

    let mut decoder = SseDecoder::with_limit(100);
    let mut out = Vec::new();
    assert!(decoder.feed(&stream, &mut out).is_err());
    assert_eq!(decoder.data.capacity(), 0, "the event's data is freed");
}

#[test]
fn an_event_name_counts_against_the_limit() {
    let name = "n".repeat(60);
    let stream = format!("event: {name}\ndata: 0123456789\n\n");
    // While the data line (16 bytes) is read, the name (60) is held too: 76 in all.
    let (events, overflow) = decode_limited(76, &[stream.as_bytes()]);
    assert_eq!((events.len(), overflow), (1, None));
    let (events, overflow) = decode_limited(75, &[stream.as_bytes()]);
    assert_eq!((events.len(), overflow), (0, Some(Overflow { limit: 75 })));
}

/// One event whose largest moment holds exactly `held` bytes: a 40-byte first data line, then a
/// second whose raw line brings the total to `held` (data so far plus the line being read).
fn event_holding(held: usize) -> Vec<u8> {
    let first = "a".repeat(40);
    // While the second line is read: 40 (first data) + `data: ` + payload.
    let payload = "b".repeat(held - 40 - 6);
    format!("data: {first}\ndata: {payload}\n\ndata: [DONE]\n\n").into_bytes()
}

#[test]
fn an_event_at_the_limit_decodes_and_one_byte_more_overflows() {
    let legal = event_holding(128);
    let (events, overflow) = decode_limited(128, &[&legal]);
    assert_eq!(overflow, None);
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].data.len(), 40 + 1 + (128 - 46));
    assert!(events[1].is_done());

    let (events, overflow) = decode_limited(128, &[&event_holding(129)]);
    assert_eq!((events, overflow), (vec![], Some(Overflow { limit: 128 })));
}

#[test]
fn the_limit_holds_across_chunk_boundaries() {
    // Wherever the streams are cut (two cuts, and byte by byte), the one at the limit decodes
    // whole and the one a byte over overflows before any event.
    let legal = event_holding(96);
    let over = event_holding(97);
    let whole = decode_limited(96, &[&legal]);
    assert_eq!((whole.0.len(), whole.1), (2, None));
    for (stream, expected) in [
        (&legal, whole.clone()),
        (&over, (vec![], Some(Overflow { limit: 96 }))),
    ] {
        for i in 0..=stream.len() {
            for j in i..=stream.len() {
                let parts = [&stream[..i], &stream[i..j], &stream[j..]];
                assert_eq!(decode_limited(96, &parts), expected, "split at {i},{j}");
            }
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(decode_limited(96, &bytes), expected, "byte by byte");
    }
}

#[test]
fn a_big_event_under_the_default_limit_decodes_in_network_sized_chunks() {
    // An in-stream base64 image of just under 8 MiB, as 16 KiB reads would deliver it.
    let payload = "A".repeat(DEFAULT_EVENT_LIMIT - 6);
    let stream = format!("data: {payload}\n\n");
    let parts: Vec<&[u8]> = stream.as_bytes().chunks(16 * 1024).collect();
    let (events, overflow) = decode_limited(DEFAULT_EVENT_LIMIT, &parts);
    assert_eq!(overflow, None);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].data.len(), DEFAULT_EVENT_LIMIT - 6);

    // One byte more, and no end: the default decoder stops it.
    let mut decoder = SseDecoder::new();
    assert_eq!(decoder.limit(), DEFAULT_EVENT_LIMIT);
    let mut out = Vec::new();
    let over = format!("data: {payload}A");
    let overflow = over
        .as_bytes()
        .chunks(16 * 1024)
        .find_map(|part| decoder.feed(part, &mut out).err());
    assert_eq!(
        overflow.map(|o| o.to_string()).as_deref(),
        Some("upstream event over 8 MiB")
    );
}
