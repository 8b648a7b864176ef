//! Text forms of dates and times. The canonical forms are parsed and
//! printed by hand: chrono's format strings are interpreted on every call,
//! which made them the hottest code of a SQLite copy.

use std::fmt::Write as _;

use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike};

fn digits(bytes: &[u8]) -> Option<u32> {
    if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(bytes.iter().fold(0, |n, b| n * 10 + u32::from(b - b'0')))
}

/// `YYYY-MM-DD`.
pub fn parse_date(text: &str) -> Option<NaiveDate> {
    let b = text.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let year = i32::try_from(digits(&b[..4])?).ok()?;
    NaiveDate::from_ymd_opt(year, digits(&b[5..7])?, digits(&b[8..10])?)
}

/// `HH:MM:SS` with an optional fraction of 1 to 9 digits (cut to
/// microseconds).
pub fn parse_time(text: &str) -> Option<NaiveTime> {
    let b = text.as_bytes();
    if b.len() < 8 || b[2] != b':' || b[5] != b':' {
        return None;
    }
    let micros = match &b[8..] {
        [] => 0,
        [b'.', frac @ ..] if !frac.is_empty() && frac.len() <= 9 => {
            let mut micros = 0;
            for i in 0..6 {
                micros = micros * 10
                    + frac
                        .get(i)
                        .map_or(Some(0), |d| digits(std::slice::from_ref(d)))?;
            }
            if frac.len() > 6 {
                digits(&frac[6..])?;
            }
            micros
        }
        _ => return None,
    };
    NaiveTime::from_hms_micro_opt(
        digits(&b[..2])?,
        digits(&b[3..5])?,
        digits(&b[6..8])?,
        micros,
    )
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff]` (or with `T`).
pub fn parse_datetime(text: &str) -> Option<NaiveDateTime> {
    let b = text.as_bytes();
    if b.len() < 19 || !matches!(b[10], b' ' | b'T') {
        return None;
    }
    Some(NaiveDateTime::new(
        parse_date(&text[..10])?,
        parse_time(&text[11..])?,
    ))
}

pub fn write_date(out: &mut String, d: NaiveDate) {
    let _ = write!(out, "{:04}-{:02}-{:02}", d.year(), d.month(), d.day());
}

/// `HH:MM:SS`, then `.fff` or `.ffffff` if there is a fraction: the same
/// output as chrono's `%H:%M:%S%.f` at microsecond resolution.
pub fn write_time(out: &mut String, t: NaiveTime) {
    let _ = write!(out, "{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second());
    let micros = t.nanosecond() / 1000;
    if micros == 0 {
        return;
    }
    if micros.is_multiple_of(1000) {
        let _ = write!(out, ".{:03}", micros / 1000);
    } else {
        let _ = write!(out, ".{micros:06}");
    }
}

pub fn write_datetime(out: &mut String, ts: NaiveDateTime, separator: char) {
    write_date(out, ts.date());
    out.push(separator);
    write_time(out, ts.time());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_written_forms_agree_with_chrono() {
        for text in [
            "2024-02-29 23:59:59.123456",
            "0001-01-01 00:00:00",
            "9999-12-31 12:00:00.500",
            "2024-01-01 00:00:00.000010",
        ] {
            let ts = parse_datetime(text).unwrap();
            assert_eq!(
                ts,
                NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f").unwrap()
            );
            let mut out = String::new();
            write_datetime(&mut out, ts, ' ');
            assert_eq!(out, ts.format("%Y-%m-%d %H:%M:%S%.f").to_string());
            assert_eq!(out, text);
        }
        assert_eq!(
            parse_time("01:02:03.1234567").unwrap(),
            NaiveTime::from_hms_micro_opt(1, 2, 3, 123_456).unwrap()
        );
        for bad in [
            "2024-02-30",
            "2024-1-01",
            "24:00:00",
            "12:00",
            "12:00:00.",
            "12:00:00.x",
            "2024-01-01X00:00:00",
        ] {
            assert!(
                parse_date(bad).is_none()
                    && parse_time(bad).is_none()
                    && parse_datetime(bad).is_none(),
                "{bad}"
            );
        }
    }
}
