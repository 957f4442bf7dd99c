//! Percent-encoding of one URL path segment or query value (RFC 3986): unreserved characters
//! stay, every other byte is `%XX`. Model ids and deployment names go into paths this way (a
//! Bedrock id carries `:`, an ARN `/`).

/// `value` as one path segment or query value.
pub fn segment(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 15)]));
        }
    }
    out
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

#[cfg(test)]
mod tests {
    #[test]
    fn only_unreserved_characters_stay() {
        assert_eq!(super::segment("a-b.c_d~e"), "a-b.c_d~e");
        assert_eq!(super::segment("v1:0/x y"), "v1%3A0%2Fx%20y");
        assert_eq!(super::segment("é"), "%C3%A9");
    }
}
