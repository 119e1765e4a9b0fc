//! A time as Mandate's JSON writes it: RFC 3339 in UTC, byte for byte the form of
//! `chrono`'s serde encoding (`SecondsFormat::AutoSi`, `Z`), written without going
//! through `core::fmt`. Every audit event carries one and is encoded twice (for its
//! hash and for storage), so this is on the hot path of every call and every token.

use chrono::{DateTime, Datelike, SecondsFormat, Timelike, Utc};

/// The longest form `chrono` writes (`+262143-12-31T23:59:60.999999999Z` is 33).
const MAX_LEN: usize = 40;

/// A time's RFC 3339 text, held on the stack.
#[derive(Clone, Copy)]
pub struct TimeText {
    bytes: [u8; MAX_LEN],
    len: usize,
}

impl TimeText {
    /// The text of `at`, as `serde_json::to_string(&at)` would write it (unquoted).
    pub fn new(at: &DateTime<Utc>) -> TimeText {
        let mut text = TimeText {
            bytes: [0; MAX_LEN],
            len: 0,
        };
        let year = at.year();
        let nanos = at.nanosecond();
        // Years of four digits and no leap second: the common form, written here.
        // Anything else takes chrono's own route (its output is the definition).
        if !(0..=9999).contains(&year) || nanos >= 1_000_000_000 {
            text.push(at.to_rfc3339_opts(SecondsFormat::AutoSi, true).as_bytes());
            return text;
        }
        let year = year.unsigned_abs();
        text.digits(year / 100, 2);
        text.digits(year % 100, 2);
        text.push(b"-");
        text.digits(at.month(), 2);
        text.push(b"-");
        text.digits(at.day(), 2);
        text.push(b"T");
        text.digits(at.hour(), 2);
        text.push(b":");
        text.digits(at.minute(), 2);
        text.push(b":");
        text.digits(at.second(), 2);
        // AutoSi: no fraction, or milli-, micro- or nanoseconds, whichever is exact.
        if nanos != 0 {
            text.push(b".");
            if nanos.is_multiple_of(1_000_000) {
                text.digits(nanos / 1_000_000, 3);
            } else if nanos.is_multiple_of(1_000) {
                text.digits(nanos / 1_000, 6);
            } else {
                text.digits(nanos, 9);
            }
        }
        text.push(b"Z");
        text
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII is ever written.
        self.bytes
            .get(..self.len)
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or_default()
    }

    fn push(&mut self, bytes: &[u8]) {
        let end = (self.len + bytes.len()).min(MAX_LEN);
        if let Some(slot) = self.bytes.get_mut(self.len..end) {
            slot.copy_from_slice(bytes.get(..end - self.len).unwrap_or_default());
            self.len = end;
        }
    }

    /// `value` in exactly `width` decimal digits (leading zeros kept).
    fn digits(&mut self, mut value: u32, width: usize) {
        let end = (self.len + width).min(MAX_LEN);
        if let Some(slot) = self.bytes.get_mut(self.len..end) {
            for b in slot.iter_mut().rev() {
                // `value % 10` is a single digit.
                *b = b'0' + (value % 10) as u8;
                value /= 10;
            }
            self.len = end;
        }
    }
}

impl std::ops::Deref for TimeText {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Debug for TimeText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// For `#[serde(serialize_with = "mandate_types::serialize_time")]` on a UTC time:
/// the same string as chrono's own `Serialize`, written faster.
pub fn serialize_time<S: serde::Serializer>(
    at: &DateTime<Utc>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(TimeText::new(at).as_str())
}

#[cfg(test)]
mod tests {
    use chrono::{NaiveDate, TimeZone};
    use proptest::prelude::*;

    use super::*;

    fn chrono_form(at: &DateTime<Utc>) -> String {
        let quoted = serde_json::to_string(at).unwrap();
        quoted.trim_matches('"').to_owned()
    }

    #[test]
    fn each_fraction_width_and_the_edges_match_chrono() {
        let base = Utc.with_ymd_and_hms(2026, 12, 6, 1, 26, 11).unwrap();
        for nanos in [
            0,
            1,
            999,
            1_000,
            849_611_000,
            5_000_000,
            123_456_789,
            999_999_999,
        ] {
            let at = base + chrono::Duration::nanoseconds(nanos);
            assert_eq!(TimeText::new(&at).as_str(), chrono_form(&at), "{nanos}");
        }
        // (year, month, day, nanoseconds of the day's last second or 0 at midnight)
        let ends = [
            (0, 1, 1, None),
            (9999, 12, 31, Some(999_999_999)),
            // Outside four digits, and a leap second: chrono's route.
            (-1, 12, 31, None),
            (10_000, 1, 1, None),
            (2016, 12, 31, Some(1_500_000_000)),
        ]
        .map(|(y, m, d, nanos)| {
            let day = NaiveDate::from_ymd_opt(y, m, d).unwrap();
            match nanos {
                None => day.and_hms_opt(0, 0, 0),
                Some(n) => day.and_hms_nano_opt(23, 59, 59, n),
            }
        });
        for naive in ends {
            let at = Utc.from_utc_datetime(&naive.unwrap());
            assert_eq!(TimeText::new(&at).as_str(), chrono_form(&at));
        }
    }

    proptest! {
        #[test]
        fn any_time_is_written_as_chrono_writes_it(
            secs in -70_000_000_000i64..300_000_000_000i64,
            nanos in prop_oneof![Just(0u32), 0u32..1_000u32, 0u32..1_000_000_000u32,
                                 (0u32..1_000).prop_map(|m| m * 1_000_000),
                                 (0u32..1_000_000).prop_map(|u| u * 1_000)],
        ) {
            let at = DateTime::from_timestamp(secs, nanos).unwrap();
            let text = TimeText::new(&at);
            prop_assert_eq!(text.as_str(), chrono_form(&at));
            let mut json = Vec::new();
            serialize_time(&at, &mut serde_json::Serializer::new(&mut json)).unwrap();
            prop_assert_eq!(json, serde_json::to_vec(&at).unwrap());
        }
    }
}
