//! Server-sent events: an incremental decoder that accepts bytes split anywhere (mid-line,
//! mid-UTF-8 sequence, between CR and LF), and the encoder for the frames nines writes.
//!
//! The gateway relays OpenAI streams as raw bytes, but it must still see event boundaries to know
//! when a stream has proven itself, when it finished (`[DONE]`, a finish reason) and when a provider
//! sent an error in-band. This decoder gives it that view without buffering the stream.

/// One dispatched event. `data` joins multiple `data:` lines with `\n`, as the SSE spec says.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
}

impl SseEvent {
    /// OpenAI's end-of-stream sentinel.
    pub fn is_done(&self) -> bool {
        self.data.trim() == "[DONE]"
    }
}

/// Incremental SSE decoder.
#[derive(Debug, Default)]
pub struct SseDecoder {
    line: Vec<u8>,
    after_cr: bool,
    data: Vec<u8>,
    has_data: bool,
    event: Option<String>,
}

impl SseDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds a chunk; completed events are appended to `out`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<SseEvent>) {
        let mut rest = chunk;
        while !rest.is_empty() {
            // Runs of line content are copied whole; only the line endings are looked at alone.
            match rest.iter().position(|&b| b == b'\n' || b == b'\r') {
                None => {
                    self.after_cr = false;
                    self.line.extend_from_slice(rest);
                    return;
                }
                Some(i) => {
                    if i > 0 {
                        self.after_cr = false;
                        self.line.extend_from_slice(&rest[..i]);
                    }
                    match rest[i] {
                        b'\n' if self.after_cr => self.after_cr = false,
                        b'\n' => self.end_line(out),
                        _ => {
                            self.end_line(out);
                            self.after_cr = true;
                        }
                    }
                    rest = &rest[i + 1..];
                }
            }
        }
    }

    /// Ends the stream: an event not yet terminated by a blank line is dispatched, because
    /// upstreams that close right after their last `data:` line still meant it.
    pub fn finish(&mut self, out: &mut Vec<SseEvent>) {
        if !self.line.is_empty() {
            self.end_line(out);
        }
        self.dispatch(out);
    }

    /// Whether bytes of an unfinished event are buffered.
    pub fn is_mid_event(&self) -> bool {
        !self.line.is_empty() || self.has_data
    }

    fn end_line(&mut self, out: &mut Vec<SseEvent>) {
        if self.line.is_empty() {
            self.dispatch(out);
            return;
        }
        // Taken and given back, so the line buffer keeps its allocation from line to line.
        let mut line = std::mem::take(&mut self.line);
        self.field(&line);
        line.clear();
        self.line = line;
    }

    fn field(&mut self, line: &[u8]) {
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(0) => return, // comment
            Some(i) => {
                let value = &line[i + 1..];
                (&line[..i], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
            }
            b"event" => self.event = Some(String::from_utf8_lossy(value).into_owned()),
            _ => {}
        }
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        if self.has_data {
            // Valid UTF-8 (the norm) becomes the event's text without a copy.
            let data = match String::from_utf8(std::mem::take(&mut self.data)) {
                Ok(text) => text,
                Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
            };
            out.push(SseEvent {
                event: self.event.take(),
                data,
            });
            self.has_data = false;
        } else {
            self.event = None;
        }
    }
}

/// Encodes one `data:` frame (the payload must not contain newlines; JSON never does unescaped).
pub fn data_frame(payload: &[u8]) -> bytes::Bytes {
    let mut out = bytes::BytesMut::with_capacity(payload.len() + 8);
    push_data_frame(&mut out, payload);
    out.freeze()
}

/// Appends one `data:` frame to `out`, for a relay that writes many frames into one buffer.
pub fn push_data_frame(out: &mut bytes::BytesMut, payload: &[u8]) {
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\n\n");
}

/// Encodes one named event frame, `event: <name>\ndata: <payload>\n\n` (Anthropic streams name
/// every event).
pub fn event_frame(event: &str, payload: &[u8]) -> bytes::Bytes {
    let mut out = Vec::with_capacity(event.len() + payload.len() + 16);
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(event.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\n\n");
    out.into()
}

/// The frame that ends an OpenAI stream.
pub const DONE_FRAME: &[u8] = b"data: [DONE]\n\n";

#[cfg(test)]
mod tests;
