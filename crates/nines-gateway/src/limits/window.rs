//! Token-bucket arithmetic, budget periods (UTC days and calendar months) and Go-style durations
//! for the `x-ratelimit-reset-*` headers.

use crate::clock::unix_ms;
use std::time::{Duration, SystemTime};

const MINUTE_SECS: f64 = 60.0;

/// A bucket's level after `elapsed` of refill at `capacity` per minute, never above capacity.
pub(crate) fn refill(level: f64, elapsed: Duration, capacity: u64) -> f64 {
    let cap = capacity as f64;
    (level + elapsed.as_secs_f64() * cap / MINUTE_SECS).min(cap)
}

/// How long until a bucket at `level` holds `wanted`.
pub(crate) fn time_to(level: f64, wanted: f64, capacity: u64) -> Duration {
    if level >= wanted || capacity == 0 {
        return Duration::ZERO;
    }
    // An absurd request (max_tokens near u64::MAX) waits "forever" rather than panicking.
    crate::clock::seconds((wanted - level) * MINUTE_SECS / capacity as f64).unwrap_or(Duration::MAX)
}

/// A budget period: a UTC day or a UTC calendar month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Period {
    /// Days since 1970-01-01.
    Day(i64),
    /// `year * 12 + (month - 1)`.
    Month(i64),
}

const DAY_MS: i64 = 86_400_000;

impl Period {
    pub fn day_of(t: SystemTime) -> Period {
        Period::Day(unix_ms(t).div_euclid(DAY_MS))
    }

    pub fn month_of(t: SystemTime) -> Period {
        let (y, m, _) = civil_from_days(unix_ms(t).div_euclid(DAY_MS));
        Period::Month(y * 12 + (m - 1))
    }

    /// Unix milliseconds of the period's first instant.
    pub fn start_ms(self) -> i64 {
        match self {
            Period::Day(d) => d * DAY_MS,
            Period::Month(ym) => {
                days_from_civil(ym.div_euclid(12), ym.rem_euclid(12) + 1, 1) * DAY_MS
            }
        }
    }

    /// Unix milliseconds of the next period's first instant.
    pub fn end_ms(self) -> i64 {
        match self {
            Period::Day(d) => Period::Day(d + 1).start_ms(),
            Period::Month(ym) => Period::Month(ym + 1).start_ms(),
        }
    }

    /// Time left in the period from `now`.
    pub fn remaining(self, now: SystemTime) -> Duration {
        Duration::from_millis((self.end_ms() - unix_ms(now)).max(0) as u64)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Period::Day(_) => "daily",
            Period::Month(_) => "monthly",
        }
    }

    /// Short, unique tag for keys: `d20412`, `m24299`.
    pub fn tag(self) -> String {
        match self {
            Period::Day(d) => format!("d{d}"),
            Period::Month(m) => format!("m{m}"),
        }
    }
}

/// Days since 1970-01-01 → (year, month 1..=12, day 1..=31); Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month 1..=12, day) → days since 1970-01-01.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A duration as Go prints it (`12ms`, `1.5s`, `6m0s`, `1h2m3s`), rounded to milliseconds —
/// the form OpenAI uses in `x-ratelimit-reset-*` and clients parse.
pub fn go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if d.is_zero() {
        return "0s".into();
    }
    if ms == 0 {
        let us = d.as_micros();
        return if us == 0 {
            format!("{}ns", d.as_nanos())
        } else {
            format!("{us}µs")
        };
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = ms / 1000;
    let frac = ms % 1000;
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    let mut sec = s.to_string();
    if frac > 0 {
        let f = format!("{frac:03}");
        sec.push('.');
        sec.push_str(f.trim_end_matches('0'));
    }
    if h > 0 {
        format!("{h}h{m}m{sec}s")
    } else if m > 0 {
        format!("{m}m{sec}s")
    } else {
        format!("{sec}s")
    }
}

/// The start of a report's window: `day` (this UTC day), `month` (this UTC month: what budgets
/// count), or a duration back from now (`90m`, `24h`, `7d`), rounded down to its minute.
pub fn window_start(window: &str, now: std::time::SystemTime) -> Result<i64, String> {
    match window {
        "day" => Ok(Period::day_of(now).start_ms()),
        "month" => Ok(Period::month_of(now).start_ms()),
        _ => {
            let back = humantime::parse_duration(window).map_err(|_| {
                format!("window must be day, month or a duration like 24h or 7d, not '{window}'")
            })?;
            let at = crate::clock::unix_ms(now.checked_sub(back).unwrap_or(std::time::UNIX_EPOCH));
            Ok(at - at.rem_euclid(60_000))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(go_duration(Duration::ZERO), "0s");
        assert_eq!(go_duration(Duration::from_millis(12)), "12ms");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_millis(7660)), "7.66s");
        assert_eq!(go_duration(Duration::from_secs(1)), "1s");
        assert_eq!(go_duration(Duration::from_secs(360)), "6m0s");
        assert_eq!(go_duration(Duration::from_secs(3723)), "1h2m3s");
        assert_eq!(go_duration(Duration::from_micros(20)), "20µs");
    }

    #[test]
    fn periods_follow_the_calendar() {
        // 2024-02-29T12:00:00Z
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_709_208_000);
        let day = Period::day_of(t);
        assert_eq!(day.start_ms(), 1_709_164_800_000);
        assert_eq!(day.end_ms(), 1_709_251_200_000);
        let month = Period::month_of(t);
        assert_eq!(month, Period::Month(2024 * 12 + 1));
        assert_eq!(month.start_ms(), 1_706_745_600_000); // 2024-02-01
        assert_eq!(month.end_ms(), 1_709_251_200_000); // 2024-03-01
        let dec = Period::Month(2023 * 12 + 11);
        assert_eq!(dec.end_ms(), 1_704_067_200_000); // 2024-01-01
        for z in [-1000, 0, 59, 11_016, 19_782, 40_000] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
    }

    #[test]
    fn buckets_refill_per_minute() {
        assert_eq!(refill(0.0, Duration::from_secs(30), 10), 5.0);
        assert_eq!(refill(9.0, Duration::from_secs(60), 10), 10.0);
        assert_eq!(time_to(0.0, 1.0, 60), Duration::from_secs(1));
        assert_eq!(time_to(2.0, 1.0, 60), Duration::ZERO);
    }
}
