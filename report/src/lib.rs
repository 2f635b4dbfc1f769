//! longhaul-report: the computation behind the `csv-report` job, as pure functions over
//! bytes so each step runs where the workflow puts it (a Lambda, or in process):
//!
//! 1. [`Planner`] reads the file once, front to back, and cuts it into byte ranges of about
//!    `chunk_bytes` that start and end on record boundaries (quoted fields may hold
//!    newlines, so a cut is only made at a newline outside quotes).
//! 2. [`aggregate`] groups and sums one range into a [`Partial`] (small: one entry per
//!    group, never rows).
//! 3. [`merge`] combines the partials exactly (means from sums and counts), sorts, and
//!    writes `report.csv`; [`chart::bar_chart_png`] draws the top groups.
//!
//! The answer does not depend on how the file was cut.

pub mod chart;
mod spec;

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

pub use spec::{Filter, FilterOp, Metric, MetricOp, ReportSpec, Source};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ReportError {
    #[error("column {column:?} is not in the CSV header (columns: {known})")]
    UnknownColumn { column: String, known: String },
    #[error("the file has no header row")]
    NoHeader,
    #[error("the CSV header is not valid: {0}")]
    BadHeader(String),
    #[error("CSV error: {0}")]
    Csv(String),
    #[error("invalid report spec: {0}")]
    Spec(String),
}

/// One record-aligned byte range of the file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Chunk {
    pub start: u64,
    pub end: u64,
    /// Physical line number (1-based) of the range's first line, for warnings.
    pub first_line: u64,
}

/// The header and the ranges.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub header: Vec<String>,
    pub size_bytes: u64,
    pub chunks: Vec<Chunk>,
}

/// Where the CSV reader is within a record, exactly as the `csv` crate (csv-core) sees it,
/// so a cut is never placed where the reader of a range would disagree: a quote opens a
/// quoted field only at the start of a field, `""` inside one is a literal quote, a quote
/// after the closing one continues the field unquoted, and `\r` or `\n` ends a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lexer {
    FieldStart,
    Field,
    Quoted,
    QuoteInQuoted,
}

impl Lexer {
    fn step(self, b: u8, delimiter: u8) -> Lexer {
        let ends_field = b == delimiter || b == b'\n' || b == b'\r';
        match self {
            Lexer::Quoted if b == b'"' => Lexer::QuoteInQuoted,
            Lexer::Quoted => Lexer::Quoted,
            Lexer::FieldStart if b == b'"' => Lexer::Quoted,
            Lexer::QuoteInQuoted if b == b'"' => Lexer::Quoted,
            _ if ends_field => Lexer::FieldStart,
            _ => Lexer::Field,
        }
    }
}

/// Cuts a CSV into record-aligned ranges while it is read front to back.
pub struct Planner {
    delimiter: u8,
    chunk_bytes: u64,
    pos: u64,
    state: Lexer,
    line: u64,
    header: Option<Vec<String>>,
    header_buf: Vec<u8>,
    cut: u64,
    cut_line: u64,
    chunks: Vec<Chunk>,
}

/// Longest header accepted (a file without newlines is not a CSV we can cut).
const MAX_HEADER_BYTES: usize = 1 << 20;

impl Planner {
    pub fn new(delimiter: u8, chunk_bytes: u64) -> Planner {
        Planner {
            delimiter,
            chunk_bytes: chunk_bytes.max(1),
            pos: 0,
            state: Lexer::FieldStart,
            line: 1,
            header: None,
            header_buf: Vec::new(),
            cut: 0,
            cut_line: 1,
            chunks: Vec::new(),
        }
    }

    /// The next bytes of the file.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<(), ReportError> {
        if self.header.is_none() {
            let (done, used) = self.feed_header(bytes)?;
            bytes = &bytes[used..];
            if !done {
                return Ok(());
            }
        }
        let base = self.pos;
        let d = self.delimiter;
        let mut i = 0usize;
        while i < bytes.len() {
            // Outside quotes, up to the next quote character every newline ends a record:
            // take that whole span at memchr speed (most files have few or no quotes).
            if matches!(self.state, Lexer::Field | Lexer::FieldStart) {
                let rest = &bytes[i..];
                let stop = memchr::memchr(b'"', rest).unwrap_or(rest.len());
                if stop > 0 {
                    self.plain_span(&rest[..stop], base + i as u64);
                    i += stop;
                    continue;
                }
            }
            // Inside quotes only the next quote matters.
            if self.state == Lexer::Quoted {
                let rest = &bytes[i..];
                let stop = memchr::memchr(b'"', rest).unwrap_or(rest.len());
                self.line += memchr::memchr_iter(b'\n', &rest[..stop]).count() as u64;
                i += stop;
                if i < bytes.len() {
                    self.state = Lexer::QuoteInQuoted;
                    i += 1;
                }
                continue;
            }
            // What is left: a quote outside quotes, or any byte after a quote in quotes.
            let b = bytes[i];
            self.state = self.state.step(b, d);
            if b == b'\n' {
                self.line += 1;
                let after = base + i as u64 + 1;
                // A newline outside quotes ends a record: a place to cut.
                if self.state == Lexer::FieldStart && after - self.cut >= self.chunk_bytes {
                    self.cut_before(after);
                }
            }
            i += 1;
        }
        self.pos = base + bytes.len() as u64;
        Ok(())
    }

    /// Ends the current chunk at file offset `after` (just past a record's newline); the next
    /// starts there, on the current line.
    fn cut_before(&mut self, after: u64) {
        self.chunks.push(Chunk {
            start: self.cut,
            end: after,
            first_line: self.cut_line,
        });
        self.cut = after;
        self.cut_line = self.line;
    }

    /// A span without quote characters, starting outside quotes at file offset `at`: cuts at
    /// the first newline past each chunk's size, counts lines, and leaves the lexer where a
    /// byte-by-byte walk would.
    fn plain_span(&mut self, span: &[u8], at: u64) {
        let mut from = 0usize;
        loop {
            // The first newline at file offset >= cut + chunk_bytes - 1 ends this chunk.
            let want = (self.cut.saturating_add(self.chunk_bytes) - 1).saturating_sub(at);
            let Ok(want) = usize::try_from(want) else {
                break;
            };
            if want >= span.len() {
                break;
            }
            let look = want.max(from);
            let Some(off) = memchr::memchr(b'\n', &span[look..]) else {
                break;
            };
            let nl = look + off;
            self.line += memchr::memchr_iter(b'\n', &span[from..=nl]).count() as u64;
            let after = at + nl as u64 + 1;
            self.cut_before(after);
            from = nl + 1;
        }
        self.line += memchr::memchr_iter(b'\n', &span[from..]).count() as u64;
        if let Some(&last) = span.last() {
            self.state = if last == self.delimiter || last == b'\n' || last == b'\r' {
                Lexer::FieldStart
            } else {
                Lexer::Field
            };
        }
    }

    /// Collects the header record; returns whether it is complete and how many bytes it used.
    fn feed_header(&mut self, bytes: &[u8]) -> Result<(bool, usize), ReportError> {
        for (i, &b) in bytes.iter().enumerate() {
            self.state = self.state.step(b, self.delimiter);
            if b == b'\n' && self.state == Lexer::FieldStart {
                self.line += 1;
                let is_blank = self.header_buf.iter().all(|c| c.is_ascii_whitespace())
                    || self.header_buf == b"\xEF\xBB\xBF"
                    || self
                        .header_buf
                        .strip_prefix(b"\xEF\xBB\xBF")
                        .is_some_and(|r| r.iter().all(|c| c.is_ascii_whitespace()));
                if is_blank {
                    // Blank lines before the header.
                    self.header_buf.clear();
                    continue;
                }
                self.header = Some(parse_header(&self.header_buf, self.delimiter)?);
                self.pos += i as u64 + 1;
                self.cut = self.pos;
                self.cut_line = self.line;
                return Ok((true, i + 1));
            }
            self.header_buf.push(b);
            if b == b'\n' {
                self.line += 1;
            }
            if self.header_buf.len() > MAX_HEADER_BYTES {
                return Err(ReportError::BadHeader(format!(
                    "no end of the header row within {MAX_HEADER_BYTES} bytes"
                )));
            }
        }
        self.pos += bytes.len() as u64;
        Ok((false, bytes.len()))
    }

    pub fn finish(mut self) -> Result<Plan, ReportError> {
        if self.header.is_none() {
            if self.header_buf.iter().all(|c| c.is_ascii_whitespace())
                || self
                    .header_buf
                    .strip_prefix(b"\xEF\xBB\xBF")
                    .is_some_and(|r| r.iter().all(|c| c.is_ascii_whitespace()))
            {
                return Err(ReportError::NoHeader);
            }
            // A file that is only a header line without a final newline.
            self.header = Some(parse_header(&self.header_buf, self.delimiter)?);
            self.cut = self.pos;
        }
        if self.pos > self.cut {
            self.chunks.push(Chunk {
                start: self.cut,
                end: self.pos,
                first_line: self.cut_line,
            });
        }
        Ok(Plan {
            header: self.header.unwrap_or_default(),
            size_bytes: self.pos,
            chunks: self.chunks,
        })
    }
}

fn parse_header(bytes: &[u8], delimiter: u8) -> Result<Vec<String>, ReportError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .delimiter(delimiter)
        .from_reader(bytes);
    let mut rec = csv::StringRecord::new();
    match rdr.read_record(&mut rec) {
        Ok(true) => Ok(rec.iter().map(|s| s.trim().to_string()).collect()),
        Ok(false) => Err(ReportError::NoHeader),
        Err(e) => Err(ReportError::BadHeader(e.to_string())),
    }
}

/// The header of a CSV from its first bytes, if they hold a whole header row.
pub fn read_header(first_bytes: &[u8], delimiter: u8) -> Result<Option<Vec<String>>, ReportError> {
    let mut p = Planner::new(delimiter, u64::MAX);
    p.feed(first_bytes)?;
    Ok(p.header)
}

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

const NANO: i128 = 1_000_000_000;

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

fn nano_to_f64(e: i128) -> f64 {
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

    fn merge(&mut self, o: &Acc) {
        self.n += o.n;
        self.sum += o.sum;
        self.exact = match (self.exact, o.exact) {
            (Some(a), Some(b)) => a.checked_add(b),
            _ => None,
        };
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
    }

    fn total(&self) -> f64 {
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

const MAX_SKIPPED_LINES: usize = 10;

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

/// The merged report.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The inline result: `{rowsRead, rowsSkipped, groups, columns, top, warnings}`.
    pub result: serde_json::Value,
    /// `report.csv`: every group, sorted as asked.
    pub csv: Vec<u8>,
    /// The top groups: (label, value of the sort metric), for the chart.
    pub chart_bars: Vec<(String, f64)>,
    pub sort_metric: String,
}

fn final_value(op: MetricOp, a: &Acc) -> f64 {
    match op {
        MetricOp::Count => a.n as f64,
        MetricOp::Sum => a.total(),
        MetricOp::Mean => match (a.n, a.exact) {
            (0, _) => 0.0,
            // Exact division first, so the mean too does not depend on the cut.
            (n, Some(e)) => {
                let n = i128::from(n);
                nano_to_f64(e / n) + (e % n) as f64 / (n as f64 * NANO as f64)
            }
            (n, None) => a.sum / n as f64,
        },
        MetricOp::Min => {
            if a.n == 0 {
                0.0
            } else {
                a.min
            }
        }
        MetricOp::Max => {
            if a.n == 0 {
                0.0
            } else {
                a.max
            }
        }
    }
}

fn json_number(op: MetricOp, x: f64) -> serde_json::Value {
    if op == MetricOp::Count || (x.fract() == 0.0 && x.abs() < 9e15) {
        serde_json::Value::from(x as i64)
    } else {
        serde_json::Number::from_f64(x)
            .map(serde_json::Value::Number)
            .unwrap_or(serde_json::Value::Null)
    }
}

fn csv_number(op: MetricOp, x: f64) -> String {
    if op == MetricOp::Count || (x.fract() == 0.0 && x.abs() < 9e15) {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

/// Merges the partials into the report.
pub fn merge(spec: &ReportSpec, partials: &[Partial]) -> Result<Report, ReportError> {
    let mut groups: HashMap<Vec<String>, Vec<Acc>> = HashMap::new();
    let (mut rows_read, mut rows_skipped) = (0u64, 0u64);
    let mut skipped_lines = Vec::new();
    for p in partials {
        rows_read += p.rows_read;
        rows_skipped += p.rows_skipped;
        skipped_lines.extend_from_slice(&p.skipped_lines);
        for (k, accs) in &p.groups {
            match groups.get_mut(k) {
                Some(existing) => existing.iter_mut().zip(accs).for_each(|(a, b)| a.merge(b)),
                None => {
                    groups.insert(k.clone(), accs.clone());
                }
            }
        }
    }
    // With no groupBy there is one row of totals, even over no rows.
    if spec.group_by.is_empty() && groups.is_empty() {
        groups.insert(Vec::new(), vec![Acc::default(); spec.metrics.len()]);
    }
    skipped_lines.sort_unstable();
    skipped_lines.truncate(MAX_SKIPPED_LINES);
    let names: Vec<String> = spec.metrics.iter().map(Metric::name).collect();
    let sort_metric = spec.sort_by.clone().unwrap_or_else(|| names[0].clone());
    let sort_idx = names
        .iter()
        .position(|n| *n == sort_metric)
        .ok_or_else(|| {
            ReportError::Spec(format!(
                "sortBy {sort_metric:?} is not a metric name ({})",
                names.join(", ")
            ))
        })?;
    let mut rows: Vec<(Vec<String>, Vec<f64>)> = groups
        .into_iter()
        .map(|(k, accs)| {
            let v = spec
                .metrics
                .iter()
                .zip(&accs)
                .map(|(m, a)| final_value(m.op, a))
                .collect();
            (k, v)
        })
        .collect();
    rows.sort_by(|a, b| {
        let o = a.1[sort_idx]
            .partial_cmp(&b.1[sort_idx])
            .unwrap_or(std::cmp::Ordering::Equal);
        let o = if spec.descending { o.reverse() } else { o };
        o.then_with(|| a.0.cmp(&b.0))
    });
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut head: Vec<String> = spec.group_by.clone();
    head.extend(names.iter().cloned());
    w.write_record(&head)
        .map_err(|e| ReportError::Csv(e.to_string()))?;
    for (k, v) in &rows {
        let mut rec: Vec<String> = k.clone();
        rec.extend(
            spec.metrics
                .iter()
                .zip(v)
                .map(|(m, x)| csv_number(m.op, *x)),
        );
        w.write_record(&rec)
            .map_err(|e| ReportError::Csv(e.to_string()))?;
    }
    let csv = w
        .into_inner()
        .map_err(|e| ReportError::Csv(e.to_string()))?;
    let top: Vec<serde_json::Value> = rows
        .iter()
        .take(spec.limit)
        .map(|(k, v)| {
            let mut m = serde_json::Map::new();
            for (c, val) in spec.group_by.iter().zip(k) {
                m.insert(c.clone(), serde_json::Value::from(val.clone()));
            }
            for ((n, mt), x) in names.iter().zip(&spec.metrics).zip(v) {
                m.insert(n.clone(), json_number(mt.op, *x));
            }
            serde_json::Value::Object(m)
        })
        .collect();
    let mut warnings = Vec::new();
    if rows_skipped > 0 {
        warnings.push(format!(
            "{rows_skipped} row(s) skipped because a metric field was not a number (first at line(s) {})",
            skipped_lines.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
        ));
    }
    let chart_bars = rows
        .iter()
        .take(spec.limit.min(20))
        .map(|(k, v)| {
            let label = if k.is_empty() {
                "all rows".to_string()
            } else {
                k.iter()
                    .map(|x| if x.is_empty() { "(empty)" } else { x.as_str() })
                    .collect::<Vec<_>>()
                    .join(" / ")
            };
            (label, v[sort_idx])
        })
        .collect();
    let result = serde_json::json!({
        "rowsRead": rows_read,
        "rowsSkipped": rows_skipped,
        "groups": rows.len(),
        "columns": head,
        "top": top,
        "warnings": warnings,
    });
    Ok(Report {
        result,
        csv,
        chart_bars,
        sort_metric,
    })
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
