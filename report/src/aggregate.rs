//! Step 2, Aggregate: one range of the file → a [`Partial`] (one entry per group, never
//! rows).

mod number;
mod records;

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::{MetricOp, ReportError, ReportSpec};
use number::{Number, parse_number, plain_edge};
use records::{Record, Records};

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

pub(crate) fn nano_to_f64(e: i128) -> f64 {
    (e / NANO) as f64 + (e % NANO) as f64 / NANO as f64
}

impl Acc {
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

/// Aggregates one range of the file (`chunk` holds its bytes).
pub fn aggregate(
    spec: &ReportSpec,
    header: &[String],
    chunk: &[u8],
    first_line: u64,
) -> Result<Partial, ReportError> {
    let cols = columns(spec, header)?;
    let delimiter = spec.delimiter_byte().map_err(ReportError::Spec)?;
    let values = ValueColumns::new(spec, &cols)?;
    let keep = cols
        .group
        .iter()
        .chain(&cols.filter)
        .chain(&values.columns)
        .max()
        .map_or(1, |c| c + 1);
    let mut records = Records::new(chunk, delimiter, keep);
    let mut groups = Groups::new(values.columns.len());
    let mut parsed: Vec<Number> = vec![(0.0, None); values.columns.len()];
    let mut key = Vec::with_capacity(64);
    let mut lines = LineCounter {
        counted_to: 0,
        line: first_line,
    };
    let mut out = Partial::default();
    while let Some(rec) = records.next_record() {
        // Blank lines are not rows.
        if rec.fields == 1 && rec.field(0).iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if !spec
            .filter
            .iter()
            .zip(&cols.filter)
            .all(|(f, &i)| f.matches(rec.field(i)))
        {
            continue;
        }
        out.rows_read += 1;
        if !values.parse(&rec, &mut parsed) {
            out.rows_skipped += 1;
            if out.skipped_lines.len() < MAX_SKIPPED_LINES {
                // Counted only here: line numbers are needed for the first skipped rows
                // alone, and counting every row's newlines cost a tenth of the time.
                out.skipped_lines.push(lines.line_of(chunk, rec.start));
            }
            continue;
        }
        key.clear();
        for &i in &cols.group {
            push_key_field(&mut key, rec.field(i));
        }
        groups.add(&key, &parsed);
    }
    out.groups = groups.into_partial_groups(&values);
    Ok(out)
}

/// The columns the metrics read, each parsed once per row however many metrics read it
/// (`count` reads none: it counts rows).
struct ValueColumns {
    columns: Vec<usize>,
    /// Metric → its position in `columns` (None for `count`).
    slot: Vec<Option<usize>>,
}

impl ValueColumns {
    fn new(spec: &ReportSpec, cols: &Columns) -> Result<ValueColumns, ReportError> {
        let mut wanted = Vec::with_capacity(spec.metrics.len());
        for (m, c) in spec.metrics.iter().zip(&cols.metric) {
            wanted.push(match (m.op, c) {
                (MetricOp::Count, _) => None,
                (_, Some(c)) => Some(*c),
                (op, None) => {
                    return Err(ReportError::Spec(format!(
                        "the {op:?} metric needs a column"
                    )));
                }
            });
        }
        let mut columns: Vec<usize> = wanted.iter().flatten().copied().collect();
        columns.sort_unstable();
        columns.dedup();
        let slot = wanted
            .iter()
            .map(|c| c.and_then(|c| columns.binary_search(&c).ok()))
            .collect();
        Ok(ValueColumns { columns, slot })
    }

    /// Parses the row's value columns; false when one is not a number (the row is skipped).
    #[inline]
    fn parse(&self, rec: &Record<'_>, parsed: &mut [Number]) -> bool {
        for (p, &c) in parsed.iter_mut().zip(&self.columns) {
            match parse_number(rec.field(c)) {
                Some(x) => *p = x,
                None => return false,
            }
        }
        true
    }
}

/// Running totals of one value column in one group; every metric over that column is
/// derived from them.
#[derive(Debug, Clone, Copy)]
struct Totals {
    sum: f64,
    exact: Option<i128>,
    min: f64,
    max: f64,
}

impl Totals {
    const EMPTY: Totals = Totals {
        sum: 0.0,
        exact: Some(0),
        min: f64::INFINITY,
        max: f64::NEG_INFINITY,
    };

    #[inline]
    fn add(&mut self, (x, fixed): Number) {
        self.sum += x;
        self.exact = match (self.exact, fixed) {
            (Some(a), Some(b)) => a.checked_add(b),
            _ => None,
        };
        self.min = self.min.min(x);
        self.max = self.max.max(x);
    }
}

/// The groups of one range, found by their encoded key (each field: length, then bytes)
/// without allocating per row; rows and totals in flat Vecs, a group's at its index.
struct Groups {
    index: HashMap<Vec<u8>, usize, foldhash::fast::RandomState>,
    keys: Vec<Vec<u8>>,
    rows: Vec<u64>,
    /// Group `g`'s totals are `totals[g * width..(g + 1) * width]`.
    totals: Vec<Totals>,
    width: usize,
}

impl Groups {
    fn new(width: usize) -> Groups {
        Groups {
            index: HashMap::default(),
            keys: Vec::new(),
            rows: Vec::new(),
            totals: Vec::new(),
            width,
        }
    }

    #[inline]
    fn add(&mut self, key: &[u8], values: &[Number]) {
        let g = match self.index.get(key) {
            Some(&g) => g,
            None => {
                let g = self.keys.len();
                self.keys.push(key.to_vec());
                self.index.insert(key.to_vec(), g);
                self.rows.push(0);
                self.totals
                    .resize(self.totals.len() + self.width, Totals::EMPTY);
                g
            }
        };
        self.rows[g] += 1;
        let totals = &mut self.totals[g * self.width..(g + 1) * self.width];
        for (t, &v) in totals.iter_mut().zip(values) {
            t.add(v);
        }
    }

    /// One accumulator per metric for each group, in the order the groups were met.
    fn into_partial_groups(self, values: &ValueColumns) -> Vec<(Vec<String>, Vec<Acc>)> {
        self.keys
            .iter()
            .enumerate()
            .map(|(g, key)| {
                let n = self.rows[g];
                let accs = values
                    .slot
                    .iter()
                    .map(|slot| match slot {
                        // count: as if 1 had been added for each row.
                        None => Acc {
                            n,
                            sum: n as f64,
                            exact: i128::from(n).checked_mul(NANO),
                            min: 1.0,
                            max: 1.0,
                        },
                        Some(s) => {
                            let t = self.totals[g * self.width + s];
                            Acc {
                                n,
                                sum: t.sum,
                                exact: t.exact,
                                min: t.min,
                                max: t.max,
                            }
                        }
                    })
                    .collect();
                (decode_key(key), accs)
            })
            .collect()
    }
}

/// Physical line numbers of record starts, counted from the bytes on demand (csv's own
/// count differs on blank lines), front to back.
struct LineCounter {
    counted_to: usize,
    line: u64,
}

impl LineCounter {
    fn line_of(&mut self, chunk: &[u8], offset: usize) -> u64 {
        if offset > self.counted_to {
            self.line += memchr::memchr_iter(b'\n', &chunk[self.counted_to..offset]).count() as u64;
            self.counted_to = offset;
        }
        self.line
    }
}

/// Appends one group field to an encoded key: its text as a group value (lossy UTF-8,
/// trimmed), length first so that fields cannot run into each other.
#[inline]
fn push_key_field(key: &mut Vec<u8>, field: &[u8]) {
    let plain = match (field.first(), field.last()) {
        (Some(&a), Some(&b)) => plain_edge(a) && plain_edge(b) && field.is_ascii(),
        _ => true,
    };
    if plain {
        // ASCII with no space at either end: already its own trimmed text.
        push_length(key, field.len());
        key.extend_from_slice(field);
        return;
    }
    let text = String::from_utf8_lossy(field);
    let t = text.trim().as_bytes();
    push_length(key, t.len());
    key.extend_from_slice(t);
}

/// A field's length in a key: one byte below 255 (keys stay short, so hashing and comparing
/// them is cheap), else 255 and four bytes.
#[inline]
fn push_length(key: &mut Vec<u8>, len: usize) {
    match u8::try_from(len) {
        Ok(n) if n < u8::MAX => key.push(n),
        _ => {
            key.push(u8::MAX);
            key.extend_from_slice(&(len as u32).to_le_bytes());
        }
    }
}

fn decode_key(mut k: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    while let Some((&n, rest)) = k.split_first() {
        let (n, rest) = match (n, rest.split_first_chunk::<4>()) {
            (u8::MAX, Some((long, rest))) => (u32::from_le_bytes(*long) as usize, rest),
            _ => (usize::from(n), rest),
        };
        let end = n.min(rest.len());
        out.push(String::from_utf8_lossy(&rest[..end]).into_owned());
        k = &rest[end..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_decode_to_their_trimmed_fields_whatever_their_length() {
        let long = "x".repeat(300);
        let fields: [&[u8]; 6] = [
            b"north",
            b"",
            b"  padded\t",
            long.as_bytes(),
            "\u{a0}Zürich ".as_bytes(),
            b"bad \xff utf-8",
        ];
        let mut key = Vec::new();
        for f in fields {
            push_key_field(&mut key, f);
        }
        assert_eq!(
            decode_key(&key),
            [
                "north".to_string(),
                String::new(),
                "padded".to_string(),
                long.clone(),
                "Zürich".to_string(),
                "bad \u{fffd} utf-8".to_string()
            ]
        );
    }
}
