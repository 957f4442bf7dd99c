//! Small helpers shared by the dialect codecs: infallible JSON encoding, tool arguments as
//! objects, `data:` URLs and base64 (the few lines it takes are cheaper than a dependency).

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use std::borrow::Cow;
use std::fmt;

/// A string borrowed from the input when it has no escapes, owned otherwise.
///
/// serde borrows a bare `Cow<str>` field only with `#[serde(borrow)]` and never inside an
/// `Option`; this newtype borrows wherever it appears, which keeps per-chunk stream decoding free
/// of allocations for the common unescaped token.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Str<'a>(pub(crate) Cow<'a, str>);

impl std::ops::Deref for Str<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'a> Str<'a> {
    pub(crate) fn into_owned(self) -> String {
        self.0.into_owned()
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(Visit)
    }
}

/// Serialises a wire struct to JSON bytes.
///
/// The codecs only serialise structs with string keys and plain values, which cannot fail; should
/// one ever fail, the result is `{}`, which every upstream rejects as a client error rather than
/// nines panicking on the request path.
pub(crate) fn to_vec<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    if serde_json::to_writer(&mut out, value).is_err() {
        out.clear();
        out.extend_from_slice(b"{}");
    }
    out
}

/// Appends a value's JSON to `out` (see [`to_vec`] for why this cannot fail in practice).
pub(crate) fn write_to<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    let start = out.len();
    if serde_json::to_writer(&mut *out, value).is_err() {
        out.truncate(start);
        out.extend_from_slice(b"{}");
    }
}

/// Tool-call arguments as an object to embed verbatim, without building a JSON tree: the
/// arguments text itself when it is a JSON object, `{}` otherwise. Anthropic's `input` and Gemini's
/// `args` must be objects; text that is not one (the model produced garbage) cannot be carried,
/// and the turn is history the model already acted on, so `{}` loses nothing that could be sent.
pub(crate) enum RawArgs<'a> {
    Raw(&'a serde_json::value::RawValue),
    Empty,
}

impl<'a> RawArgs<'a> {
    pub(crate) fn new(arguments: &'a str) -> Self {
        match serde_json::from_str::<&serde_json::value::RawValue>(arguments) {
            Ok(raw) if raw.get().starts_with('{') => RawArgs::Raw(raw),
            _ => RawArgs::Empty,
        }
    }
}

impl Serialize for RawArgs<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            RawArgs::Raw(raw) => raw.serialize(serializer),
            RawArgs::Empty => {
                use serde::ser::SerializeMap;
                serializer.serialize_map(Some(0))?.end()
            }
        }
    }
}

/// An object value as compact JSON text (for tool-call arguments decoded from an object).
pub(crate) fn value_text(value: &Value) -> String {
    if value.is_null() {
        return String::from("{}");
    }
    serde_json::to_string(value).unwrap_or_else(|_| String::from("{}"))
}

/// Splits `data:<media type>;base64,<data>` into its media type and data.
pub(crate) fn parse_data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let media_type = meta.strip_suffix(";base64")?;
    Some((media_type, data))
}

pub(crate) fn data_url(media_type: &str, data: &str) -> String {
    format!("data:{media_type};base64,{data}")
}

/// A media type guessed from a URL's file extension, for dialects that require one.
pub(crate) fn media_type_from_url(url: &str) -> Option<&'static str> {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let ext = path.rsplit_once('.')?.1.to_ascii_lowercase();
    Some(match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "heic" => "image/heic",
        "heif" => "image/heif",
        "pdf" => "application/pdf",
        _ => return None,
    })
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
pub(crate) fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let sextets = [n >> 18, n >> 12, n >> 6, n];
        for (i, s) in sextets.iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(s & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64 (padding optional); `None` on any other character.
pub(crate) fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for byte in text.bytes() {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_every_length() {
        let data: Vec<u8> = (0..=255).collect();
        for len in 0..40 {
            let encoded = base64_encode(&data[..len]);
            assert_eq!(encoded.len() % 4, 0);
            assert_eq!(base64_decode(&encoded).unwrap(), &data[..len]);
        }
        assert_eq!(base64_encode(b"nines"), "bmluZXM=");
        assert_eq!(base64_decode("bmluZXM").unwrap(), b"nines");
        assert_eq!(base64_decode("b!"), None);
    }

    #[test]
    fn data_urls_and_media_types() {
        assert_eq!(
            parse_data_url("data:image/png;base64,AAAA"),
            Some(("image/png", "AAAA"))
        );
        assert_eq!(parse_data_url("data:text/plain,hi"), None);
        assert_eq!(parse_data_url("https://x/y.png"), None);
        assert_eq!(
            media_type_from_url("https://x/y.JPG?s=1"),
            Some("image/jpeg")
        );
        assert_eq!(media_type_from_url("https://x/y"), None);
    }

    #[test]
    fn arguments_become_objects() {
        let encode = |args: &str| serde_json::to_string(&RawArgs::new(args)).unwrap();
        assert_eq!(encode(""), "{}");
        assert_eq!(encode("{\"a\":1}"), "{\"a\":1}");
        assert_eq!(encode(" {\"a\": [1]} "), "{\"a\": [1]}");
        assert_eq!(encode("[1]"), "{}");
        assert_eq!(encode("{\"a\":"), "{}");
    }
}
