//! Parsing of the two unit-bearing value kinds in the configuration: byte sizes and durations.
//!
//! The same functions serve the TOML file (through the serde wrappers [`ByteSize`],
//! [`BodyLimit`] and [`deserialize_duration`]) and the command line (as clap value parsers in
//! `cli.rs`), so `"32KiB"` and `5s` mean the same thing wherever they are written.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// The longest accepted duration. Longer values are almost certainly a typo, and timers built
/// as `Instant + Duration` must not overflow.
#[allow(clippy::duration_suboptimal_units)] // from_days is unstable, from_hours needs Rust 1.91
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// Parses a byte size: plain digits (bytes), or digits followed by one of the suffixes `B`,
/// `KiB`, `MiB`, `GiB` (powers of 1024) or `KB`, `MB`, `GB` (powers of 1000). Whitespace between
/// the number and the suffix is allowed; suffixes are case-sensitive.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let digits_end = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, suffix) = trimmed.split_at(digits_end);
    if digits.is_empty() {
        return Err(format!(
            "invalid size {text:?}: expected bytes or a number with a suffix B, KiB, MiB, GiB, KB, MB, GB"
        ));
    }
    let multiplier: u64 = match suffix.trim_start() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(format!(
                "invalid size {text:?}: unknown suffix {other:?} (expected B, KiB, MiB, GiB, KB, MB or GB)"
            ))
        }
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| format!("invalid size {text:?}: too large"))
}

/// Parses a body limit: a size as in [`parse_size`], or `unlimited`.
pub fn parse_body_limit(text: &str) -> Result<BodyLimit, String> {
    if text.trim() == "unlimited" {
        Ok(BodyLimit(None))
    } else {
        parse_size(text).map(|n| BodyLimit(Some(n)))
    }
}

/// Parses a duration written in humantime syntax (`"250ms"`, `"5s"`, `"1m 30s"`). The result
/// must be greater than zero and at most [`MAX_DURATION`].
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text.trim()).map_err(|e| {
        format!("invalid duration {text:?}: {e} (examples: \"250ms\", \"5s\", \"2m\")")
    })?;
    if duration.is_zero() {
        return Err(format!("invalid duration {text:?}: must be greater than 0"));
    }
    if duration > MAX_DURATION {
        return Err(format!(
            "invalid duration {text:?}: must be at most 365days"
        ));
    }
    Ok(duration)
}

/// Like [`parse_duration`], with `0s` allowed (a setting that zero turns off).
pub fn parse_duration_or_zero(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if humantime::parse_duration(trimmed).is_ok_and(|d| d.is_zero()) {
        return Ok(Duration::ZERO);
    }
    parse_duration(text)
}

/// A byte count as written in the file: an integer, or a string with a unit suffix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteSize(pub u64);

/// `max_body`: a byte count, or `None` for `"unlimited"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BodyLimit(pub Option<u64>);

struct SizeVisitor {
    allow_unlimited: bool,
}

impl Visitor<'_> for SizeVisitor {
    type Value = Option<u64>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.allow_unlimited {
            f.write_str(
                "a size: an integer number of bytes, a string like \"64KiB\", or \"unlimited\"",
            )
        } else {
            f.write_str("a size: an integer number of bytes or a string like \"64KiB\"")
        }
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        u64::try_from(v)
            .map(Some)
            .map_err(|_| E::custom(format!("invalid size {v}: must not be negative")))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        if v.trim() == "unlimited" {
            if self.allow_unlimited {
                return Ok(None);
            }
            return Err(E::custom("\"unlimited\" is only allowed for max_body"));
        }
        parse_size(v).map(Some).map_err(E::custom)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let size = deserializer.deserialize_any(SizeVisitor {
            allow_unlimited: false,
        })?;
        Ok(ByteSize(
            size.expect("unlimited is rejected by the visitor"),
        ))
    }
}

impl<'de> Deserialize<'de> for BodyLimit {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(SizeVisitor {
                allow_unlimited: true,
            })
            .map(BodyLimit)
    }
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration string like \"250ms\", \"5s\" or \"2m\"")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        parse_duration(v).map_err(E::custom)
    }
}

/// serde `deserialize_with` for duration fields: a humantime string, greater than zero.
pub fn deserialize_duration<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Duration, D::Error> {
    deserializer.deserialize_str(DurationVisitor)
}

/// serde `deserialize_with` for duration fields that zero turns off (`"0s"`).
pub fn deserialize_duration_or_zero<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_duration_or_zero(&text).map_err(de::Error::custom)
}

/// serde `serialize_with` for duration fields: the humantime string they are read from.
#[allow(clippy::trivially_copy_pass_by_ref)] // serde's signature
pub fn serialize_duration<S: serde::Serializer>(
    duration: &Duration,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&humantime::format_duration(*duration).to_string())
}

/// serde `serialize_with` for optional duration fields.
#[allow(clippy::ref_option)] // serde's signature
pub fn serialize_some_duration<S: serde::Serializer>(
    duration: &Option<Duration>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match duration {
        Some(duration) => serialize_duration(duration, serializer),
        None => serializer.serialize_none(),
    }
}

impl serde::Serialize for ByteSize {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format_size(self.0))
    }
}

impl serde::Serialize for BodyLimit {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Some(bytes) => serializer.serialize_str(&format_size(bytes)),
            None => serializer.serialize_str("unlimited"),
        }
    }
}

/// serde `deserialize_with` for optional duration fields (with `#[serde(default)]`): present
/// means `Some`, absent means `None`.
pub fn deserialize_some_duration<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    deserialize_duration(deserializer).map(Some)
}

/// Formats a byte count the way the docs write it (`32KiB`, `1MiB`, `1000`), for messages.
pub fn format_size(bytes: u64) -> String {
    for (unit, shift) in [("GiB", 30), ("MiB", 20), ("KiB", 10)] {
        if bytes >= 1 << shift && bytes & ((1 << shift) - 1) == 0 {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    format!("{bytes}B")
}
