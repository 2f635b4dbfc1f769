//! Step 2, Aggregate: one range of the file → a [`Partial`] (one entry per group, never
//! rows).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::{MetricOp, ReportError, ReportSpec};

/// Running totals of one metric in one group.
///
/// Sums of plain decimals (at most 9 fraction digits) are kept exactly, in units of 10^-9,
/// so the answer does not depend on how the file was cut (float addition is not
/// associative); other numbers fall back to f64.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Acc {
    pub n: u64,
    pub sum: f64,
    /// The exact sum in 10^-9 units, while every value was a plain decimal.
    #[serde(default)]
    pub exact: Option<i128>,
    pub min: f64,
    pub max: f64,
}

impl Default for Acc {
    fn default() -> Self {
        Acc {
            n: 0,
            sum: 0.0,
            exact: Some(0),
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }
}

pub(crate) const NANO: i128 = 1_000_000_000;

/// A plain decimal (`-12.5`, `3`, `+0.25`) in 10^-9 units; None for anything else.
fn parse_fixed(s: &str) -> Option<i128> {
    // By hand: this runs for every metric field of every row.
    let b = s.trim().as_bytes();
    let (neg, rest) = match b.first()? {
        b'-' => (true, &b[1..]),
        b'+' => (false, &b[1..]),
        _ => (false, b),
    };
    let mut i = 0;
    let mut int: i128 = 0;
    while i < rest.len() && rest[i].is_ascii_digit() {
        if i == 20 {
            return None;
        }
        int = int * 10 + i128::from(rest[i] - b'0');
        i += 1;
    }
    let int_len = i;
    let (mut frac, mut frac_len) = (0i128, 0u32);
    if i < rest.len() {
        if rest[i] != b'.' {
            return None;
        }
        for &c in &rest[i + 1..] {
            if !c.is_ascii_digit() || frac_len == 9 {
                return None;
            }
            frac = frac * 10 + i128::from(c - b'0');
            frac_len += 1;
        }
    }
    if int_len == 0 && frac_len == 0 {
        return None;
    }
    let v = int
        .checked_mul(NANO)?
        .checked_add(frac * 10i128.pow(9 - frac_len))?;
    Some(if neg { -v } else { v })
}

pub(crate) fn nano_to_f64(e: i128) -> f64 {
    (e / NANO) as f64 + (e % NANO) as f64 / NANO as f64
}

impl Acc {
    fn add(&mut self, x: f64, fixed: Option<i128>) {
        self.n += 1;
        self.sum += x;
        self.exact = match (self.exact, fixed) {
            (Some(a), Some(b)) => a.checked_add(b),
            _ => None,
        };
        self.min = self.min.min(x);
        self.max = self.max.max(x);
    }

    pub(crate) fn merge(&mut self, o: &Acc) {
        self.n += o.n;
        self.sum += o.sum;
        self.exact = match (self.exact, o.exact) {
            (Some(a), Some(b)) => a.checked_add(b),
            _ => None,
        };
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
    }

    pub(crate) fn total(&self) -> f64 {
        self.exact.map_or(self.sum, nano_to_f64)
    }
}

/// What one range contributes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Partial {
    pub rows_read: u64,
    pub rows_skipped: u64,
    /// The first few line numbers of skipped rows.
    pub skipped_lines: Vec<u64>,
    /// Group key → one accumulator per metric.
    pub groups: Vec<(Vec<String>, Vec<Acc>)>,
}

pub(crate) const MAX_SKIPPED_LINES: usize = 10;

/// Column positions of the spec's columns.
struct Columns {
    group: Vec<usize>,
    metric: Vec<Option<usize>>,
    filter: Vec<usize>,
}

fn columns(spec: &ReportSpec, header: &[String]) -> Result<Columns, ReportError> {
    let find = |c: &str| {
        header
            .iter()
            .position(|h| h == c)
            .ok_or_else(|| ReportError::UnknownColumn {
                column: c.to_string(),
                known: header.join(", "),
            })
    };
    Ok(Columns {
        group: spec
            .group_by
            .iter()
            .map(|c| find(c))
            .collect::<Result<_, _>>()?,
        metric: spec
            .metrics
            .iter()
            .map(|m| m.column.as_deref().map(find).transpose())
            .collect::<Result<_, _>>()?,
        filter: spec
            .filter
            .iter()
            .map(|f| find(&f.column))
            .collect::<Result<_, _>>()?,
    })
}

/// Checks that every column the spec names is in the header.
pub fn check_columns(spec: &ReportSpec, header: &[String]) -> Result<(), ReportError> {
    columns(spec, header).map(|_| ())
}

fn parse_number(field: &[u8]) -> Option<(f64, Option<i128>)> {
    let s = std::str::from_utf8(field).ok()?.trim();
    if s.is_empty() {
        return None;
    }
    let fixed = parse_fixed(s);
    // Below 2^53 nanos the fixed value and 1e9 are exact doubles, so one division rounds
    // the decimal exactly as parsing it would; above, parse.
    if let Some(v) = fixed
        && v.abs() < 1i128 << 53
    {
        return Some((v as f64 / NANO as f64, fixed));
    }
    let x = s.parse::<f64>().ok().filter(|x| x.is_finite())?;
    Some((x, fixed))
}

/// Aggregates one range of the file (`chunk` holds its bytes).
pub fn aggregate(
    spec: &ReportSpec,
    header: &[String],
    chunk: &[u8],
    first_line: u64,
) -> Result<Partial, ReportError> {
    let cols = columns(spec, header)?;
    let delimiter = spec.delimiter_byte().map_err(ReportError::Spec)?;
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(chunk);
    // Groups are found by their encoded key (each field: length, then bytes) without
    // allocating per row; accumulators live in one flat Vec, a group's at index × metrics.
    let n_metrics = spec.metrics.len();
    let mut index: HashMap<Vec<u8>, usize, foldhash::fast::RandomState> = HashMap::default();
    let mut keys: Vec<Vec<u8>> = Vec::new();
    let mut accs: Vec<Acc> = Vec::new();
    let mut key = Vec::with_capacity(64);
    let mut out = Partial::default();
    let mut rec = csv::ByteRecord::new();
    let mut values = vec![(0.0f64, None::<i128>); n_metrics];
    // Each metric column is parsed once per row, however many metrics read it.
    let mut metric_columns: Vec<usize> = cols.metric.iter().flatten().copied().collect();
    metric_columns.sort_unstable();
    metric_columns.dedup();
    let mut parsed: Vec<Option<(f64, Option<i128>)>> = vec![None; metric_columns.len()];
    let slot_of: Vec<Option<usize>> = cols
        .metric
        .iter()
        .map(|c| c.and_then(|c| metric_columns.binary_search(&c).ok()))
        .collect();
    // Physical line numbers, counted from the bytes (csv's own count differs on blank lines).
    let (mut counted_to, mut line_at) = (0usize, first_line);
    loop {
        match rdr.read_byte_record(&mut rec) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(ReportError::Csv(e.to_string())),
        }
        // Blank lines are not rows.
        if rec.len() == 1
            && rec
                .get(0)
                .is_some_and(|f| f.iter().all(|c| c.is_ascii_whitespace()))
        {
            continue;
        }
        let field = |i: usize| rec.get(i).unwrap_or(b"");
        if !spec
            .filter
            .iter()
            .zip(&cols.filter)
            .all(|(f, &i)| f.matches(field(i)))
        {
            continue;
        }
        out.rows_read += 1;
        for (slot, &i) in metric_columns.iter().enumerate() {
            parsed[slot] = parse_number(field(i));
        }
        let mut ok = true;
        for (k, m) in spec.metrics.iter().enumerate() {
            if let Some(slot) = slot_of[k] {
                match parsed[slot] {
                    Some(x) => values[k] = x,
                    None if m.op == MetricOp::Count => {}
                    None => {
                        ok = false;
                        break;
                    }
                }
            }
        }
        if !ok {
            out.rows_skipped += 1;
            if out.skipped_lines.len() < MAX_SKIPPED_LINES {
                // Counted only here: line numbers are needed for the first skipped rows
                // alone, and counting every row's newlines cost a tenth of the time.
                let mut offset = rec
                    .position()
                    .map_or(0, |p| p.byte() as usize)
                    .min(chunk.len());
                // csv may report a record's start at the end of the previous CRLF terminator.
                while offset < chunk.len() && matches!(chunk[offset], b'\r' | b'\n') {
                    offset += 1;
                }
                if offset > counted_to {
                    line_at +=
                        memchr::memchr_iter(b'\n', &chunk[counted_to..offset]).count() as u64;
                    counted_to = offset;
                }
                out.skipped_lines.push(line_at);
            }
            continue;
        }
        key.clear();
        for &i in &cols.group {
            push_key_field(&mut key, field(i));
        }
        let g = match index.get(key.as_slice()) {
            Some(&g) => g,
            None => {
                let g = keys.len();
                keys.push(key.clone());
                index.insert(key.clone(), g);
                accs.resize(accs.len() + n_metrics, Acc::default());
                g
            }
        };
        let accs = &mut accs[g * n_metrics..(g + 1) * n_metrics];
        for (k, m) in spec.metrics.iter().enumerate() {
            if m.op == MetricOp::Count {
                accs[k].add(1.0, Some(NANO));
            } else {
                accs[k].add(values[k].0, values[k].1);
            }
        }
    }
    out.groups = keys
        .iter()
        .enumerate()
        .map(|(g, k)| {
            (
                decode_key(k),
                accs[g * n_metrics..(g + 1) * n_metrics].to_vec(),
            )
        })
        .collect();
    Ok(out)
}

/// Appends one group field to an encoded key: its text as a group value (lossy UTF-8,
/// trimmed), length first so that fields cannot run into each other.
fn push_key_field(key: &mut Vec<u8>, field: &[u8]) {
    match std::str::from_utf8(field) {
        Ok(s) => {
            let t = s.trim().as_bytes();
            key.extend_from_slice(&(t.len() as u32).to_le_bytes());
            key.extend_from_slice(t);
        }
        Err(_) => {
            let lossy = String::from_utf8_lossy(field);
            let t = lossy.trim().as_bytes();
            key.extend_from_slice(&(t.len() as u32).to_le_bytes());
            key.extend_from_slice(t);
        }
    }
}

fn decode_key(mut k: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    while k.len() >= 4 {
        let n = u32::from_le_bytes([k[0], k[1], k[2], k[3]]) as usize;
        let end = (4 + n).min(k.len());
        out.push(String::from_utf8_lossy(&k[4..end]).into_owned());
        k = &k[end..];
    }
    out
}

#[cfg(test)]
mod number_tests {
    use super::*;

    #[test]
    fn fast_numbers_agree_with_parsing() {
        for s in [
            "0",
            "-0",
            "1",
            "+7",
            "0.1",
            ".5",
            "5.",
            "-.25",
            "123456.789",
            "1.000000001",
            "9007199.254740991",
            "9007199.254740993",
            "-3.3",
            "12345678901234567890",
            "1e5",
            "1.2.3",
            "abc",
            "",
            "-",
            ".",
            "0.1234567891",
            "  42 ",
        ] {
            let want = s
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && !s.trim().is_empty());
            let got = parse_number(s.as_bytes()).map(|(x, _)| x);
            assert_eq!(got, want, "{s:?}");
        }
        assert_eq!(parse_fixed("-.25"), Some(-250_000_000));
        assert_eq!(parse_fixed("5."), Some(5 * NANO));
        assert_eq!(parse_fixed("0.1234567891"), None);
        assert_eq!(parse_fixed("123456789012345678901"), None);
    }
}
