//! What a windowed aggregation reads from each record — its grouping key, its event time and
//! the value it aggregates — and how its results are written, plus the command line's
//! spellings (`tumbling:60s`, `sum:amount`, `250ms`).
//!
//! Output records are JSON objects `{"key": K, "start": MS, "end": MS, "value": N}` (window
//! bounds in epoch milliseconds, end exclusive), keyed by the grouping key.

use super::window::{Aggregate, WindowResult, WindowSpec};
use crate::json::json_field;
use crate::record::ColumnarBatch;

/// Where a record's event time comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventTime {
    /// The record's timestamp.
    Timestamp,
    /// A top-level JSON field of the value holding epoch milliseconds.
    JsonField(String),
}

/// Where the grouping key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// The record's key (a null key groups as the empty key).
    RecordKey,
    /// A top-level JSON field of the value (a string's contents, or any other value's text).
    JsonField(String),
}

impl KeySource {
    /// A record's key by this source (`None`: the field is missing).
    pub fn of(
        &self,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        scratch: &mut Vec<u8>,
    ) -> Option<Vec<u8>> {
        match self {
            KeySource::RecordKey => Some(key.unwrap_or_default().to_vec()),
            KeySource::JsonField(f) => {
                json_field(value.unwrap_or_default(), f, scratch).map(<[u8]>::to_vec)
            }
        }
    }
}

impl EventTime {
    /// A record's event time by this source (`None`: the field is missing or not an
    /// integer).
    pub fn of(&self, value: Option<&[u8]>, timestamp: i64, scratch: &mut Vec<u8>) -> Option<i64> {
        match self {
            EventTime::Timestamp => Some(timestamp),
            EventTime::JsonField(f) => {
                json_field(value.unwrap_or_default(), f, scratch).and_then(integer)
            }
        }
    }
}

/// What to compute: the aggregate and, except for count, the JSON field it reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggregateSpec {
    /// The aggregate.
    pub aggregate: Aggregate,
    /// The numeric field it reads (`None` for count).
    pub field: Option<String>,
}

/// Records of a batch as `(key, event time, value)`, and how many were skipped because a
/// field was missing or not a number (they are counted, never guessed).
pub fn extract(
    batch: &ColumnarBatch,
    key: &KeySource,
    time: &EventTime,
    what: &AggregateSpec,
    out: &mut Vec<(Vec<u8>, i64, f64)>,
) -> usize {
    let rows = batch.records().map(|r| (r.key(), r.value(), r.timestamp()));
    extract_rows(rows, key, time, what, out)
}

/// [`extract`] over rows given as `(key, value, timestamp)`.
pub fn extract_rows<'a>(
    rows: impl Iterator<Item = (Option<&'a [u8]>, Option<&'a [u8]>, i64)>,
    key: &KeySource,
    time: &EventTime,
    what: &AggregateSpec,
    out: &mut Vec<(Vec<u8>, i64, f64)>,
) -> usize {
    let rows = rows.map(|(k, v, t)| ((), k, v, t));
    extract_tagged(rows, key, time, what, out, &mut Vec::new())
}

/// [`extract_rows`] over rows tagged with where they came from: the tag of each row taken
/// goes to `tags`, in step with `out`.
pub fn extract_tagged<'a, T>(
    rows: impl Iterator<Item = (T, Option<&'a [u8]>, Option<&'a [u8]>, i64)>,
    key: &KeySource,
    time: &EventTime,
    what: &AggregateSpec,
    out: &mut Vec<(Vec<u8>, i64, f64)>,
    tags: &mut Vec<T>,
) -> usize {
    let mut skipped = 0;
    let mut scratch = Vec::new();
    for (tag, record_key, value, timestamp) in rows {
        let k = key.of(record_key, value, &mut scratch);
        let t = time.of(value, timestamp, &mut scratch);
        let value = value.unwrap_or_default();
        let v = match &what.field {
            None => Some(0.0),
            Some(f) => json_field(value, f, &mut scratch).and_then(number),
        };
        match (k, t, v) {
            (Some(k), Some(t), Some(v)) => {
                out.push((k, t, v));
                tags.push(tag);
            }
            _ => skipped += 1,
        }
    }
    skipped
}

fn integer(text: &[u8]) -> Option<i64> {
    std::str::from_utf8(text).ok()?.trim().parse().ok()
}

fn number(text: &[u8]) -> Option<f64> {
    let v: f64 = std::str::from_utf8(text).ok()?.trim().parse().ok()?;
    v.is_finite().then_some(v)
}

/// A result as the JSON value of its output record.
pub fn result_json(result: &WindowResult) -> Vec<u8> {
    let mut out = Vec::with_capacity(result.key.len() + 64);
    out.extend_from_slice(b"{\"key\":");
    json_string(&String::from_utf8_lossy(&result.key), &mut out);
    out.extend_from_slice(
        format!(
            ",\"start\":{},\"end\":{},\"value\":",
            result.start, result.end
        )
        .as_bytes(),
    );
    if !result.value.is_finite() {
        // A user aggregate's NaN or infinity: JSON has no number for it.
        out.extend_from_slice(b"null");
    } else if result.value.fract() == 0.0 && result.value.abs() < 9.0e15 {
        out.extend_from_slice(format!("{}", result.value as i64).as_bytes());
    } else {
        out.extend_from_slice(format!("{}", result.value).as_bytes());
    }
    out.push(b'}');
    out
}

/// `s` as a JSON string literal.
pub(crate) fn json_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes())
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

/// A duration as the command line writes it: `250ms`, `60s`, `5m`, `2h` (milliseconds).
pub fn parse_duration(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let (digits, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, ""), |i| s.split_at(i));
    let n: i64 = digits
        .parse()
        .map_err(|_| format!("`{s}`: expected a number and a unit (250ms, 60s, 5m, 2h)"))?;
    let scale = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(format!("`{s}`: the unit is ms, s, m or h")),
    };
    n.checked_mul(scale)
        .filter(|ms| *ms > 0)
        .ok_or_else(|| format!("`{s}`: must be positive and fit in milliseconds"))
}

/// An allowed lateness: a duration as [`parse_duration`] reads it, or zero (`0`, `0s`).
pub fn parse_lateness(s: &str) -> Result<i64, String> {
    let digits = s.trim().trim_end_matches(|c: char| c.is_ascii_alphabetic());
    if !digits.is_empty() && digits.bytes().all(|b| b == b'0') {
        return Ok(0);
    }
    parse_duration(s)
}

/// `tumbling:SIZE`, `hopping:SIZE:ADVANCE` or `session:GAP`.
pub fn parse_window(s: &str) -> Result<WindowSpec, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let spec = match parts.as_slice() {
        ["tumbling", size] => WindowSpec::Tumbling {
            size: parse_duration(size)?,
        },
        ["hopping", size, advance] => WindowSpec::Hopping {
            size: parse_duration(size)?,
            advance: parse_duration(advance)?,
        },
        ["session", gap] => WindowSpec::Session {
            gap: parse_duration(gap)?,
        },
        _ => {
            return Err(format!(
                "`{s}`: expected tumbling:SIZE, hopping:SIZE:ADVANCE or session:GAP"
            ))
        }
    };
    spec.validate()?;
    Ok(spec)
}

/// `count`, `sum:FIELD`, `min:FIELD`, `max:FIELD` or `avg:FIELD`.
pub fn parse_aggregate(s: &str) -> Result<AggregateSpec, String> {
    let (name, field) = match s.split_once(':') {
        Some((n, f)) if !f.is_empty() => (n, Some(f.to_owned())),
        Some(_) => return Err(format!("`{s}`: a field name is needed after the colon")),
        None => (s, None),
    };
    let aggregate = match (name, &field) {
        ("count", None) => Aggregate::Count,
        ("sum", Some(_)) => Aggregate::Sum,
        ("min", Some(_)) => Aggregate::Min,
        ("max", Some(_)) => Aggregate::Max,
        ("avg", Some(_)) => Aggregate::Avg,
        _ => {
            return Err(format!(
                "`{s}`: expected count, sum:FIELD, min:FIELD, max:FIELD or avg:FIELD"
            ))
        }
    };
    Ok(AggregateSpec { aggregate, field })
}

/// `timestamp` or `json:FIELD`.
pub fn parse_event_time(s: &str) -> Result<EventTime, String> {
    match s.split_once(':') {
        None if s == "timestamp" => Ok(EventTime::Timestamp),
        Some(("json", f)) if !f.is_empty() => Ok(EventTime::JsonField(f.to_owned())),
        _ => Err(format!("`{s}`: expected timestamp or json:FIELD")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Compression, RawBatch, RecordBatchBuilder};

    #[test]
    fn the_command_line_spellings_parse() {
        assert_eq!(parse_duration("250ms"), Ok(250));
        assert_eq!(parse_duration("60s"), Ok(60_000));
        assert_eq!(parse_duration("5m"), Ok(300_000));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("0s").is_err());
        assert_eq!(parse_lateness("0s"), Ok(0));
        assert_eq!(parse_lateness("0"), Ok(0));
        assert_eq!(parse_lateness("2s"), Ok(2_000));
        assert!(parse_lateness("-1s").is_err());
        assert!(parse_duration("99999999999999999h").is_err());
        assert_eq!(
            parse_window("tumbling:1m"),
            Ok(WindowSpec::Tumbling { size: 60_000 })
        );
        assert_eq!(
            parse_window("hopping:60s:10s"),
            Ok(WindowSpec::Hopping {
                size: 60_000,
                advance: 10_000
            })
        );
        assert!(
            parse_window("hopping:10s:60s").is_err(),
            "advance above size"
        );
        assert_eq!(
            parse_window("session:30s"),
            Ok(WindowSpec::Session { gap: 30_000 })
        );
        assert_eq!(
            parse_aggregate("count").unwrap().aggregate,
            Aggregate::Count
        );
        assert_eq!(
            parse_aggregate("sum:amount"),
            Ok(AggregateSpec {
                aggregate: Aggregate::Sum,
                field: Some("amount".into())
            })
        );
        assert_eq!(
            parse_aggregate("avg:amount").map(|a| a.aggregate),
            Ok(Aggregate::Avg)
        );
        assert!(parse_aggregate("avg").is_err());
        assert!(parse_aggregate("sum").is_err());
        assert!(parse_aggregate("count:x").is_err());
        assert_eq!(
            parse_event_time("json:ts"),
            Ok(EventTime::JsonField("ts".into()))
        );
        assert!(parse_event_time("json:").is_err());
    }

    #[test]
    fn fields_are_read_from_json_values_and_unreadable_records_counted() {
        let mut b = RecordBatchBuilder::new(Compression::None);
        b.append(
            0,
            None,
            Some(br#"{"user":"ann","ts":1000,"amount":2.5}"#),
            &[],
        )
        .unwrap();
        b.append(1, None, Some(br#"{"user":"bob","ts":"x","amount":1}"#), &[])
            .unwrap();
        b.append(2, Some(b"k"), Some(br#"{"user":"cy","ts":3000}"#), &[])
            .unwrap();
        let batch = RawBatch::new(b.build().unwrap()).unwrap().decode().unwrap();
        let mut out = Vec::new();
        let sum = AggregateSpec {
            aggregate: Aggregate::Sum,
            field: Some("amount".into()),
        };
        let skipped = extract(
            &batch,
            &KeySource::JsonField("user".into()),
            &EventTime::JsonField("ts".into()),
            &sum,
            &mut out,
        );
        assert_eq!(out, vec![(b"ann".to_vec(), 1000, 2.5)]);
        assert_eq!(skipped, 2, "a bad time and a missing amount");
        let count = AggregateSpec {
            aggregate: Aggregate::Count,
            field: None,
        };
        out.clear();
        let skipped = extract(
            &batch,
            &KeySource::RecordKey,
            &EventTime::Timestamp,
            &count,
            &mut out,
        );
        assert_eq!((out.len(), skipped), (3, 0));
        assert_eq!(out[2].0, b"k".to_vec());
    }

    #[test]
    fn results_are_written_as_json() {
        let r = WindowResult {
            key: b"a\"b".to_vec(),
            start: 0,
            end: 60_000,
            value: 3.0,
        };
        assert_eq!(
            result_json(&r),
            br#"{"key":"a\"b","start":0,"end":60000,"value":3}"#.to_vec()
        );
        let half = WindowResult { value: 1.5, ..r };
        assert!(String::from_utf8(result_json(&half))
            .unwrap()
            .ends_with("\"value\":1.5}"));
    }
}
