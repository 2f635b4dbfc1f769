//! Step 1, Plan: cut a CSV into byte ranges of about `chunk_bytes` that start and end on
//! record boundaries, while it is read once, front to back (quoted fields may hold newlines,
//! so a cut is only made at a newline outside quotes).

use serde::{Deserialize, Serialize};

use crate::ReportError;

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
