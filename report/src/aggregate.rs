//! Step 2, Aggregate: one range of the file → a [`Partial`] (one entry per group, never
//! rows).

mod number;
mod records;

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::{MetricOp, ReportError, ReportSpec};
use number::{Number, parse_number, plain_edge};
use records::{Record, Records};

/// Running totals of one value column in one group; every metric over that column (sum,
/// mean, min, max) is derived from them and the group's row count.
///
/// Sums of plain decimals (at most 9 fraction digits) are kept exactly, in units of 10^-9,
/// so the answer does not depend on how the file was cut (float addition is not
/// associative); other numbers fall back to f64.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    pub sum: f64,
    /// The exact sum in 10^-9 units, while every value was a plain decimal.
    #[serde(default)]
    pub exact: Option<i128>,
    pub min: f64,
    pub max: f64,
}

impl Totals {
    pub(crate) const EMPTY: Totals = Totals {
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

    pub(crate) fn merge(&mut self, o: &Totals) {
        self.sum += o.sum;
        self.exact = match (self.exact, o.exact) {
            (Some(a), Some(b)) => a.checked_add(b),
            _ => None,
        };
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
    }

    /// The sum: exact when every value was a plain decimal.
    pub(crate) fn total(&self) -> f64 {
        self.exact.map_or(self.sum, nano_to_f64)
    }
}

pub(crate) const NANO: i128 = 1_000_000_000;

pub(crate) fn nano_to_f64(e: i128) -> f64 {
    (e / NANO) as f64 + (e % NANO) as f64 / NANO as f64
}

/// One group of a range: its key, how many rows it has, and one [`Totals`] per value
/// column: the columns the non-count metrics name, each once, in the order first named.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Group {
    pub key: Vec<String>,
    pub rows: u64,
    pub totals: Vec<Totals>,
}

/// What one range contributes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Partial {
    pub rows_read: u64,
    pub rows_skipped: u64,
    /// The first few line numbers of skipped rows.
    pub skipped_lines: Vec<u64>,
    pub groups: Vec<Group>,
}

/// The columns the metrics read, each once however many metrics read it, in the order
/// they are first named (`count` reads none: it counts rows); and, for each metric, its
/// column's place in that list (None for `count`).
pub(crate) fn value_columns(
    spec: &ReportSpec,
) -> Result<(Vec<&str>, Vec<Option<usize>>), ReportError> {
    let mut names: Vec<&str> = Vec::new();
    let mut slots = Vec::with_capacity(spec.metrics.len());
    for m in &spec.metrics {
        slots.push(match (m.op, m.column.as_deref()) {
            (MetricOp::Count, _) => None,
            (_, Some(c)) => Some(match names.iter().position(|n| *n == c) {
                Some(i) => i,
                None => {
                    names.push(c);
                    names.len() - 1
                }
            }),
            (op, None) => {
                return Err(ReportError::Spec(format!(
                    "the {op:?} metric needs a column"
                )));
            }
        });
    }
    Ok((names, slots))
}

pub(crate) const MAX_SKIPPED_LINES: usize = 10;

/// Column positions of the spec's group and filter columns.
struct Columns {
    group: Vec<usize>,
    filter: Vec<usize>,
}

/// Finds the spec's columns in the header (metric columns are only checked here), naming
/// the first that is missing.
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
    let group = spec
        .group_by
        .iter()
        .map(|c| find(c))
        .collect::<Result<_, _>>()?;
    for c in spec.metrics.iter().filter_map(|m| m.column.as_deref()) {
        find(c)?;
    }
    Ok(Columns {
        group,
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
    let values = ValueColumns::new(spec, header)?;
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
    out.groups = groups.into_partial_groups();
    Ok(out)
}

/// The header positions of the value columns, each parsed once per row.
struct ValueColumns {
    columns: Vec<usize>,
}

impl ValueColumns {
    fn new(spec: &ReportSpec, header: &[String]) -> Result<ValueColumns, ReportError> {
        let (names, _) = value_columns(spec)?;
        let columns = names
            .iter()
            .map(|n| {
                header
                    .iter()
                    .position(|h| h == n)
                    .ok_or_else(|| ReportError::UnknownColumn {
                        column: n.to_string(),
                        known: header.join(", "),
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(ValueColumns { columns })
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

    /// The groups, in the order they were met.
    fn into_partial_groups(self) -> Vec<Group> {
        let width = self.width;
        self.keys
            .iter()
            .enumerate()
            .map(|(g, key)| Group {
                key: decode_key(key),
                rows: self.rows[g],
                totals: self.totals[g * width..(g + 1) * width].to_vec(),
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

    /// However a key's fields are spelled (padded, non-ASCII, exactly 16 bytes, longer), one
    /// group per key text: the short and the long keys never hold the same group twice.
    #[test]
    fn each_group_is_found_once_whatever_its_spelling() {
        let spec: ReportSpec = serde_json::from_value(serde_json::json!({
            "source": {"object": "x"}, "groupBy": ["a", "b"], "metrics": [{"op": "count"}]
        }))
        .unwrap();
        let header = vec!["a".to_string(), "b".to_string()];
        let sixteen = "0123456789abcdef";
        let long = "0123456789abcdefg";
        let data = format!(
            "north,x\n north ,x\nnorth\t,x\n\"north\",x\nZürich,y\n Zürich,y\n\
             {sixteen},z\n {sixteen},z\n{long},z\n {long} ,z\n,\n\"\",\n"
        );
        let p = aggregate(&spec, &header, data.as_bytes(), 2).unwrap();
        let got: Vec<(Vec<String>, u64)> =
            p.groups.iter().map(|g| (g.key.clone(), g.rows)).collect();
        let k = |a: &str, b: &str| vec![a.to_string(), b.to_string()];
        assert_eq!(
            got,
            [
                (k("north", "x"), 4),
                (k("Zürich", "y"), 2),
                (k(sixteen, "z"), 2),
                (k(long, "z"), 2),
                (k("", ""), 2),
            ]
        );
    }
}
