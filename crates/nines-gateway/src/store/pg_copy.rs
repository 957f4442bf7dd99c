//! Usage records as rows of Postgres' `COPY ... FROM STDIN` text format.
//!
//! A batch of usage records goes to Postgres as one `COPY` stream instead of one `INSERT` with
//! 23 bound parameters per row: the gateway writes each value once into one buffer (no
//! per-parameter allocation), and Postgres parses plain rows instead of planning a statement
//! with thousands of parameters. Format: one line per row, values separated by tabs, `\N` for
//! NULL, and `\\`, `\t`, `\n`, `\r` escaped inside text
//! (<https://www.postgresql.org/docs/current/sql-copy.html>, "Text Format").

use super::usage::UsageRecord;
use std::fmt::Write;

/// The statement the rows are streamed to; its column order is [`push_row`]'s.
pub(super) const COPY_USAGE: &str = concat!(
    "COPY usage_records (",
    super::usage::usage_columns!(),
    ") FROM STDIN"
);

/// Appends one record as a `COPY` text row (newline included).
pub(super) fn push_row(out: &mut String, r: &UsageRecord) {
    text(out, &r.id);
    tab_text(out, &r.request_id);
    tab_opt_text(out, r.key_id.as_deref());
    tab_opt_text(out, r.user_id.as_deref());
    tab_opt_text(out, r.org_id.as_deref());
    tab_text(out, &r.model);
    tab_opt_text(out, r.deployment.as_deref());
    tab_text(out, &r.endpoint);
    tab_int(out, i64::from(r.stream));
    tab_int(out, i64::from(r.attempts));
    tab_int(out, i64::from(r.status));
    tab_text(out, &r.outcome);
    tab_opt_int(out, r.tokens_in.map(saturating_i64));
    tab_opt_int(out, r.tokens_out.map(saturating_i64));
    tab_int(out, i64::from(r.usage_estimated));
    tab_float(out, Some(r.cost));
    tab_float(out, r.ttfb_ms);
    tab_float(out, Some(r.latency_ms));
    tab_int(out, r.started_at);
    tab_int(out, r.finished_at);
    tab_text(out, &r.plan);
    tab_text(out, &r.attempt_trail);
    tab_opt_text(out, r.fallback.as_deref());
    out.push('\n');
}

fn saturating_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn tab_text(out: &mut String, s: &str) {
    out.push('\t');
    text(out, s);
}

fn tab_opt_text(out: &mut String, s: Option<&str>) {
    match s {
        Some(s) => tab_text(out, s),
        None => out.push_str("\t\\N"),
    }
}

/// Escapes what the text format gives a meaning to. NUL cannot be stored in a Postgres text
/// value at all; it becomes U+FFFD rather than failing the whole batch (a client can put one in
/// a model name), and the batch would otherwise be retried forever.
fn text(out: &mut String, s: &str) {
    let special = |b: &u8| matches!(b, b'\\' | b'\t' | b'\n' | b'\r' | 0);
    let mut rest = s;
    // A byte scan: every one of these is ASCII, so a match is always a char boundary.
    while let Some(i) = rest.as_bytes().iter().position(special) {
        out.push_str(&rest[..i]);
        out.push_str(match rest.as_bytes()[i] {
            b'\\' => "\\\\",
            b'\t' => "\\t",
            b'\n' => "\\n",
            b'\r' => "\\r",
            _ => "\u{FFFD}",
        });
        rest = &rest[i + 1..];
    }
    out.push_str(rest);
}

fn tab_int(out: &mut String, n: i64) {
    // Writing to a String cannot fail.
    let _ = write!(out, "\t{n}");
}

fn tab_opt_int(out: &mut String, n: Option<i64>) {
    match n {
        Some(n) => tab_int(out, n),
        None => out.push_str("\t\\N"),
    }
}

/// Rust prints finite floats without an exponent and exactly enough digits to read them back;
/// Postgres spells the non-finite ones `NaN`, `Infinity` and `-Infinity`.
fn tab_float(out: &mut String, x: Option<f64>) {
    match x {
        None => out.push_str("\t\\N"),
        Some(x) if x.is_nan() => out.push_str("\tNaN"),
        Some(x) if x.is_infinite() => {
            out.push_str(if x > 0.0 { "\tInfinity" } else { "\t-Infinity" })
        }
        Some(x) => {
            let _ = write!(out, "\t{x}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn record() -> UsageRecord {
        UsageRecord {
            id: "0190-a".into(),
            request_id: "req-1".into(),
            key_id: Some("k1".into()),
            user_id: None,
            org_id: None,
            model: "gpt\t4\\o\nmini\r\0".into(),
            deployment: Some(Arc::from("d1")),
            endpoint: "chat".into(),
            stream: true,
            attempts: 2,
            status: 200,
            outcome: "ok".into(),
            tokens_in: Some(12),
            tokens_out: None,
            usage_estimated: false,
            cost: 0.000_000_1,
            ttfb_ms: Some(f64::INFINITY),
            latency_ms: 12.5,
            started_at: 1_700_000_000_000,
            finished_at: -1,
            plan: "".into(),
            attempt_trail: "d1#0 ok 200 1ms".into(),
            fallback: Some("backup".into()),
        }
    }

    #[test]
    fn a_row_has_every_column_in_order_with_text_escaped() {
        let mut out = String::new();
        push_row(&mut out, &record());
        let expected = [
            "0190-a",
            "req-1",
            "k1",
            "\\N",
            "\\N",
            "gpt\\t4\\\\o\\nmini\\r\u{FFFD}",
            "d1",
            "chat",
            "1",
            "2",
            "200",
            "ok",
            "12",
            "\\N",
            "0",
            "0.0000001",
            "Infinity",
            "12.5",
            "1700000000000",
            "-1",
            "",
            "d1#0 ok 200 1ms",
            "backup",
        ]
        .join("\t")
            + "\n";
        assert_eq!(out, expected);
        // As many values as the statement names columns.
        let columns = COPY_USAGE.split('(').nth(1).unwrap().split(')').next();
        assert_eq!(columns.unwrap().split(',').count(), 23);
    }

    #[test]
    fn floats_read_back_exactly() {
        for x in [0.1, 1e-12, 123_456.789, f64::MAX, f64::MIN_POSITIVE] {
            let mut out = String::new();
            tab_float(&mut out, Some(x));
            assert_eq!(out[1..].parse::<f64>().unwrap(), x);
        }
        let mut out = String::new();
        tab_float(&mut out, Some(f64::NAN));
        tab_float(&mut out, Some(f64::NEG_INFINITY));
        assert_eq!(out, "\tNaN\t-Infinity");
    }
}
