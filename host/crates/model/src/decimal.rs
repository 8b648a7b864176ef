//! An exact decimal number kept as canonical text. Decimals never pass through
//! binary floating point: `12.50` stays `12.50`, whatever its size.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Canonical form: an optional `-`, at least one integer digit without
/// leading zeros, and optionally `.` with the fraction digits as given
/// (trailing zeros are kept: they carry the scale).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Decimal(String);

impl Decimal {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Digits after the decimal point.
    pub fn scale(&self) -> usize {
        self.0.split_once('.').map_or(0, |(_, frac)| frac.len())
    }

    /// Digits before the decimal point (zero for `0.x`).
    pub fn integer_digits(&self) -> usize {
        let int = self.0.trim_start_matches('-');
        let int = int.split_once('.').map_or(int, |(i, _)| i);
        if int == "0" { 0 } else { int.len() }
    }

    /// The decimal as it fits a column of the given scale: extra fraction
    /// digits must be zeros (never silently rounded), missing ones are padded.
    pub fn rescale(&self, scale: usize) -> Option<Decimal> {
        let current = self.scale();
        if current == scale {
            return Some(self.clone());
        }
        if current < scale {
            let mut text = self.0.clone();
            if current == 0 {
                text.push('.');
            }
            text.extend(std::iter::repeat_n('0', scale - current));
            return Some(Decimal(text));
        }
        let (int, frac) = self.0.split_once('.')?;
        let (keep, cut) = frac.split_at(scale);
        if !cut.bytes().all(|b| b == b'0') {
            return None;
        }
        let text = if keep.is_empty() {
            int.to_string()
        } else {
            format!("{int}.{keep}")
        };
        Some(canonical(&text))
    }
}

/// Strips a `+`, leading zeros and a negative zero; the input is known valid.
fn canonical(text: &str) -> Decimal {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (int, frac) = match digits.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (digits, None),
    };
    let int = int.trim_start_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    let is_zero = int == "0" && frac.is_none_or(|f| f.bytes().all(|b| b == b'0'));
    let mut out = String::with_capacity(text.len() + 1);
    if negative && !is_zero {
        out.push('-');
    }
    out.push_str(int);
    if let Some(frac) = frac.filter(|f| !f.is_empty()) {
        out.push('.');
        out.push_str(frac);
    }
    Decimal(out)
}

/// Whether `text` is already in the canonical form `canonical` produces.
fn is_canonical(text: &str) -> bool {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int, frac) = match digits.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (digits, None),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(int) || (int.len() > 1 && int.starts_with('0')) {
        return false;
    }
    if frac.is_some_and(|f| !all_digits(f)) {
        return false;
    }
    let is_zero = int == "0" && frac.is_none_or(|f| f.bytes().all(|b| b == b'0'));
    !(negative && is_zero)
}

/// Moves the decimal point of `digits` (with an optional `.`) by `exp` places.
fn apply_exponent(mantissa: &str, exp: i64) -> Option<String> {
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all: String = format!("{int}{frac}");
    let point = i64::try_from(int.len()).ok()? + exp;
    if exp.abs() > 400 {
        return None;
    }
    Some(if point <= 0 {
        let zeros = usize::try_from(-point).ok()?;
        format!("0.{}{}", "0".repeat(zeros), all)
    } else {
        let point = usize::try_from(point).ok()?;
        if point >= all.len() {
            format!("{all}{}", "0".repeat(point - all.len()))
        } else {
            format!("{}.{}", &all[..point], &all[point..])
        }
    })
}

impl FromStr for Decimal {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        // Databases print decimals in canonical form already: one copy, no
        // reassembly (this parse is hot in every SQL reader).
        if is_canonical(text) {
            return Ok(Decimal(text.to_string()));
        }
        let bad = || format!("`{s}` is not a decimal number");
        let (sign, unsigned) = match text.as_bytes().first() {
            Some(b'-') => ("-", &text[1..]),
            Some(b'+') => ("", &text[1..]),
            _ => ("", text),
        };
        let (mantissa, exp) = match unsigned.find(['e', 'E']) {
            Some(at) => {
                let exp: i64 = unsigned[at + 1..].parse().map_err(|_| bad())?;
                (&unsigned[..at], Some(exp))
            }
            None => (unsigned, None),
        };
        let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let digits_ok = int.bytes().all(|b| b.is_ascii_digit())
            && frac.bytes().all(|b| b.is_ascii_digit())
            && !(int.is_empty() && frac.is_empty());
        if !digits_ok {
            return Err(bad());
        }
        let int = if int.is_empty() { "0" } else { int };
        let plain = if frac.is_empty() && !mantissa.ends_with('.') {
            int.to_string()
        } else {
            format!("{int}.{frac}")
        };
        let plain = match exp {
            Some(exp) => apply_exponent(&plain, exp).ok_or_else(bad)?,
            None => plain,
        };
        Ok(canonical(&format!("{sign}{plain}")))
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Decimal {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Decimal {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> String {
        s.parse::<Decimal>().expect(s).to_string()
    }

    #[test]
    fn canonical_forms_keep_scale_and_exactness() {
        assert_eq!(d("12.50"), "12.50");
        assert_eq!(d("+007.10"), "7.10");
        assert_eq!(d(".5"), "0.5");
        assert_eq!(d("-0.00"), "0.00");
        assert_eq!(d("5."), "5");
        assert_eq!(
            d("123456789012345678901234567890.123456789"),
            "123456789012345678901234567890.123456789"
        );
        assert_eq!(d("1.5e3"), "1500");
        assert_eq!(d("-2.5E-3"), "-0.0025");
    }

    #[test]
    fn the_canonical_shortcut_agrees_with_the_full_parse() {
        for text in [
            "0", "-1", "12.50", "0.000", "-0.5", "10", "-0", "-0.00", "007", "1.", ".5", "+1",
            "1e3", "-", "1.2.3", "1.-2", "0.0e0",
        ] {
            if is_canonical(text) {
                let full = canonical(text);
                assert_eq!(full.as_str(), text, "{text} is not canonical after all");
            }
        }
        assert!(is_canonical("-12.50"));
        assert!(!is_canonical("-0.00"));
        assert!(!is_canonical("007"));
        assert_eq!(d("-0"), "0");
    }

    #[test]
    fn rejects_what_is_not_a_number() {
        for bad in ["", "abc", "1.2.3", "NaN", "1e", "--1", "."] {
            assert!(bad.parse::<Decimal>().is_err(), "{bad}");
        }
    }

    #[test]
    fn rescale_pads_but_never_rounds() {
        let x: Decimal = "3.1".parse().unwrap();
        assert_eq!(x.rescale(3).unwrap().as_str(), "3.100");
        let y: Decimal = "3.100".parse().unwrap();
        assert_eq!(y.rescale(1).unwrap().as_str(), "3.1");
        let z: Decimal = "3.14".parse().unwrap();
        assert!(z.rescale(1).is_none());
        assert_eq!(x.integer_digits(), 1);
        assert_eq!("0.5".parse::<Decimal>().unwrap().integer_digits(), 0);
    }
}
