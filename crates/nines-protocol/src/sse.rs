//! Server-sent events: an incremental decoder that accepts bytes split anywhere (mid-line,
//! mid-UTF-8 sequence, between CR and LF), and the encoder for the frames nines writes.
//!
//! The gateway relays OpenAI streams as raw bytes, but it must still see event boundaries to know
//! when a stream has proven itself, when it finished (`[DONE]`, a finish reason) and when a provider
//! sent an error in-band. This decoder gives it that view without buffering the stream.
//!
//! What it does buffer (the line being read, and the current event's `data` and name) is bounded:
//! an upstream that sends one endless line, or an endless event without a blank line, would
//! otherwise make the gateway's memory grow for as long as the stream lasts (idle timeouts do not
//! help while bytes keep coming). Past the bound the decoder frees what it held, reports an
//! [`Overflow`] from every [`SseDecoder::feed`] from then on, and drops the rest of the stream.

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

/// The most one event may buffer unless a decoder is given another limit: its `data` lines, its
/// `event` name and the line being read, together. The largest legitimate events we know of are
/// images returned in-stream as base64 (image generation's partial and final images, a few MiB
/// each); 8 MiB leaves room for them and still stops an endless event early.
pub const DEFAULT_EVENT_LIMIT: usize = 8 * 1024 * 1024;

/// The largest line buffer kept for the next line (ordinary lines are far smaller).
const KEPT_LINE_CAPACITY: usize = 64 * 1024;

/// An event grew past its decoder's limit before it ended. The decoder freed what it held and
/// drops every later byte: the stream is broken (malformed), and nothing after this point can be
/// trusted to start on an event boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("upstream event over {}", readable_size(*.limit))]
pub struct Overflow {
    /// The limit that was crossed, in bytes.
    pub limit: usize,
}

/// `bytes` the way a person reads a limit: `8 MiB`, `64 KiB`, `100 bytes`.
pub fn readable_size(bytes: usize) -> String {
    const KIB: usize = 1024;
    const MIB: usize = 1024 * KIB;
    match bytes {
        b if b >= MIB && b % MIB == 0 => format!("{} MiB", b / MIB),
        b if b >= KIB && b % KIB == 0 => format!("{} KiB", b / KIB),
        b => format!("{b} bytes"),
    }
}

/// Incremental SSE decoder, holding at most its limit ([`DEFAULT_EVENT_LIMIT`] unless built with
/// [`SseDecoder::with_limit`]) of one unfinished event.
#[derive(Debug)]
pub struct SseDecoder {
    line: Vec<u8>,
    after_cr: bool,
    data: Vec<u8>,
    has_data: bool,
    event: Option<String>,
    limit: usize,
    overflowed: bool,
}

impl Default for SseDecoder {
    fn default() -> Self {
        Self::with_limit(DEFAULT_EVENT_LIMIT)
    }
}

impl SseDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// A decoder that lets one event buffer at most `limit` bytes (line, data and event name
    /// together).
    pub fn with_limit(limit: usize) -> Self {
        SseDecoder {
            line: Vec::new(),
            after_cr: false,
            data: Vec::new(),
            has_data: false,
            event: None,
            limit,
            overflowed: false,
        }
    }

    /// The most one event may buffer, in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Feeds a chunk; completed events are appended to `out`. `Err` once an event outgrew the
    /// limit: the events completed before it are still in `out`, what the decoder held is freed,
    /// and this and every later chunk is dropped (each later call returns the same `Err`).
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<SseEvent>) -> Result<(), Overflow> {
        if self.overflowed {
            return Err(self.overflow());
        }
        // The one check on the hot path: what is held grows by at most the chunk's length while
        // it is fed (a line's bytes shrink when they become data), so only a chunk that could
        // cross the limit has the held length checked before each run of line content is added.
        let watch = self.held().saturating_add(chunk.len()) > self.limit;
        let mut rest = chunk;
        while !rest.is_empty() {
            // Runs of line content are copied whole; only the line endings are looked at alone.
            match rest.iter().position(|&b| b == b'\n' || b == b'\r') {
                None => return self.append(rest, watch),
                Some(i) => {
                    if i > 0 {
                        self.append(&rest[..i], watch)?;
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
        Ok(())
    }

    /// Ends the stream: an event not yet terminated by a blank line is dispatched, because
    /// upstreams that close right after their last `data:` line still meant it. After an
    /// overflow there is nothing left to dispatch.
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

    /// Bytes held for the unfinished event.
    fn held(&self) -> usize {
        self.line.len() + self.data.len() + self.event.as_ref().map_or(0, String::len)
    }

    /// Appends a run of line content, unless (`watch`: the chunk could cross the limit) it
    /// would take what is held past the limit: then frees everything and stops for good. Checked
    /// before the append, so the line's allocation never grows past the limit either.
    fn append(&mut self, run: &[u8], watch: bool) -> Result<(), Overflow> {
        if !watch || self.held() + run.len() <= self.limit {
            self.after_cr = false;
            self.line.extend_from_slice(run);
            return Ok(());
        }
        self.line = Vec::new();
        self.data = Vec::new();
        self.has_data = false;
        self.event = None;
        self.after_cr = false;
        self.overflowed = true;
        Err(self.overflow())
    }

    fn overflow(&self) -> Overflow {
        Overflow { limit: self.limit }
    }

    fn end_line(&mut self, out: &mut Vec<SseEvent>) {
        if self.line.is_empty() {
            self.dispatch(out);
            return;
        }
        // Taken and given back, so the line buffer keeps its allocation from line to line; not
        // one a big line left behind, which would stay held for the rest of the stream.
        let mut line = std::mem::take(&mut self.line);
        self.field(&line);
        if line.capacity() <= KEPT_LINE_CAPACITY {
            line.clear();
            self.line = line;
        }
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
