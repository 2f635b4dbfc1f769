//! The records of one range, split exactly as the `csv` crate (csv-core, flexible, `"`
//! quotes) splits them, at a fraction of its cost: a record without a quote character, by
//! far the most common kind, is cut into fields where it lies, by walking a bitmask of its
//! delimiters and line ends (64 bytes compared at once); a record holding a quote goes
//! through csv-core itself, so quoting rules are csv-core's by construction.
//!
//! What csv-core does and this keeps: `\r`, `\n` and `\r\n` end a record; empty lines are
//! no records; a UTF-8 BOM at the very start of the input is dropped; a quote opens a quoted
//! field only at the start of a field.

use csv_core::ReadRecordResult;

/// One record: the bytes of its first fields (unquoted), and how many fields it has.
pub(crate) struct Record<'r> {
    /// Byte offset of the record's first byte in the range.
    pub start: usize,
    bytes: &'r [u8],
    spans: &'r [(usize, usize)],
    /// Fields in the record (may be more than were kept, or fewer than asked for).
    pub fields: usize,
}

impl<'r> Record<'r> {
    /// Field `i`, or empty when the record is shorter (ragged rows are read, not refused).
    #[inline]
    pub fn field(&self, i: usize) -> &'r [u8] {
        if i < self.fields.min(self.spans.len()) {
            let (a, b) = self.spans[i];
            &self.bytes[a..b]
        } else {
            b""
        }
    }
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Reads the records of a range front to back.
pub(crate) struct Records<'a> {
    data: &'a [u8],
    delimiter: u8,
    /// Where the next record (or the line ends before it) starts.
    pos: usize,
    /// Offset of the first quote character at or after `pos` (`data.len()` when none).
    next_quote: usize,
    /// Structural bytes (delimiter, `\r`, `\n`) not yet consumed, as bits over
    /// `data[window..window + 64]`.
    window: usize,
    mask: u64,
    /// Kept fields' spans, `keep` of them.
    spans: Vec<(usize, usize)>,
    keep: usize,
    /// Records that hold a quote: csv-core, its unquoted output and field ends.
    core: csv_core::Reader,
    out: Vec<u8>,
    ends: Vec<usize>,
}

impl<'a> Records<'a> {
    /// Records of `data`, keeping the first `keep` fields of each (at least one).
    pub fn new(data: &'a [u8], delimiter: u8, keep: usize) -> Records<'a> {
        let mut core = csv_core::ReaderBuilder::new().delimiter(delimiter).build();
        // csv-core drops a BOM only on its first read; this reader meets its first quoted
        // record anywhere in the range, so spend that first read on an empty line (no record).
        let _ = core.read_record(b"\n", &mut [0u8; 1], &mut [0usize; 1]);
        let pos = if data.starts_with(BOM) { BOM.len() } else { 0 };
        let mut records = Records {
            data,
            delimiter,
            pos,
            next_quote: 0,
            window: pos,
            mask: 0,
            spans: vec![(0, 0); keep.max(1)],
            keep: keep.max(1),
            core,
            out: vec![0; 1024],
            ends: vec![0; 64],
        };
        records.next_quote = records.find_quote(pos);
        records.mask = records.window_mask(pos);
        records
    }

    fn find_quote(&self, from: usize) -> usize {
        memchr::memchr(b'"', &self.data[from..]).map_or(self.data.len(), |i| from + i)
    }

    fn window_mask(&self, at: usize) -> u64 {
        let end = (at + 64).min(self.data.len());
        match <&[u8; 64]>::try_from(&self.data[at..end]) {
            Ok(w) => structural_mask(w, self.delimiter),
            Err(_) => structural_mask_tail(&self.data[at..end], self.delimiter),
        }
    }

    /// The next structural byte's offset, consuming it.
    #[inline]
    fn next_structural(&mut self) -> Option<usize> {
        while self.mask == 0 {
            self.window += 64;
            if self.window >= self.data.len() {
                return None;
            }
            self.mask = self.window_mask(self.window);
        }
        let at = self.window + self.mask.trailing_zeros() as usize;
        self.mask &= self.mask - 1;
        Some(at)
    }

    /// Starts the structural scan over at `at` (after a record csv-core read).
    fn rescan_from(&mut self, at: usize) {
        self.window = at;
        self.mask = if at < self.data.len() {
            self.window_mask(at)
        } else {
            0
        };
    }

    /// The next record, or None at the end of the range.
    #[inline]
    pub fn next_record(&mut self) -> Option<Record<'_>> {
        let (start, end, fields) = loop {
            let start = self.pos;
            if start >= self.data.len() {
                return None;
            }
            let (end, fields) = self.split_plain(start);
            if end == start {
                // A line end where a record would start: an empty line, no record.
                self.pos = start + 1;
                continue;
            }
            break (start, end, fields);
        };
        if self.next_quote < start {
            self.next_quote = self.find_quote(start);
        }
        if self.next_quote < end {
            return Some(self.read_quoted(start));
        }
        self.pos = end + 1;
        Some(Record {
            start,
            bytes: self.data,
            spans: &self.spans,
            fields,
        })
    }

    /// Cuts the record at `start` at every delimiter up to its line end, as if it held no
    /// quote. Returns the line end's offset (`data.len()` at the end of the range) and the
    /// number of fields.
    #[inline]
    fn split_plain(&mut self, start: usize) -> (usize, usize) {
        let (mut field, mut from) = (0usize, start);
        loop {
            let Some(at) = self.next_structural() else {
                let end = self.data.len();
                if field < self.keep {
                    self.spans[field] = (from, end);
                }
                return (end, field + 1);
            };
            if field < self.keep {
                self.spans[field] = (from, at);
            }
            if self.data[at] != self.delimiter {
                return (at, field + 1);
            }
            field += 1;
            from = at + 1;
        }
    }

    /// The record at `start`, which holds a quote, read by csv-core.
    #[cold]
    fn read_quoted(&mut self, start: usize) -> Record<'_> {
        let input = &self.data[start..];
        let (mut nin, mut nout, mut nend) = (0usize, 0usize, 0usize);
        loop {
            let (res, i, o, e) =
                self.core
                    .read_record(&input[nin..], &mut self.out[nout..], &mut self.ends[nend..]);
            nin += i;
            nout += o;
            nend += e;
            match res {
                // At the end of the input the next call, on no bytes, ends the record.
                ReadRecordResult::InputEmpty => {}
                ReadRecordResult::OutputFull => {
                    let len = self.out.len();
                    self.out.resize(len * 2, 0);
                }
                ReadRecordResult::OutputEndsFull => {
                    let len = self.ends.len();
                    self.ends.resize(len * 2, 0);
                }
                ReadRecordResult::Record | ReadRecordResult::End => break,
            }
        }
        let fields = nend;
        for f in 0..fields.min(self.keep) {
            let from = if f == 0 { 0 } else { self.ends[f - 1] };
            self.spans[f] = (from, self.ends[f]);
        }
        self.pos = start + nin;
        self.next_quote = self.find_quote(self.pos.min(self.data.len()));
        self.rescan_from(self.pos);
        Record {
            start,
            bytes: &self.out,
            spans: &self.spans,
            fields,
        }
    }
}

/// Bit `i` set where `window[i]` is the delimiter, `\r` or `\n`.
#[cfg(target_arch = "x86_64")]
#[inline]
fn structural_mask(window: &[u8; 64], delimiter: u8) -> u64 {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
    };
    let mut mask = 0u64;
    for (k, part) in window.chunks_exact(16).enumerate() {
        // SAFETY: SSE2 is part of every x86_64 target; the load reads 16 bytes of `part`,
        // which is 16 bytes long (chunks_exact), and allows any alignment.
        let bits = unsafe {
            let v = _mm_loadu_si128(part.as_ptr().cast());
            let hits = _mm_or_si128(
                _mm_cmpeq_epi8(v, _mm_set1_epi8(delimiter as i8)),
                _mm_or_si128(
                    _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\n' as i8)),
                    _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\r' as i8)),
                ),
            );
            _mm_movemask_epi8(hits) as u16
        };
        mask |= u64::from(bits) << (16 * k);
    }
    mask
}

/// Bit `i` set where `window[i]` is the delimiter, `\r` or `\n` (eight bytes at a time in
/// a u64 where there is no x86_64 SIMD).
#[cfg(not(target_arch = "x86_64"))]
#[inline]
fn structural_mask(window: &[u8; 64], delimiter: u8) -> u64 {
    structural_mask_swar(window, delimiter)
}

#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn structural_mask_swar(window: &[u8; 64], delimiter: u8) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const ONES: u64 = 0x0101_0101_0101_0101;
    // 0x80 in each byte of `x` that is zero, exactly (no carries between bytes).
    let zero_bytes = |x: u64| !(((x & LOW7) + LOW7) | x | LOW7);
    let mut mask = 0u64;
    for (k, part) in window.chunks_exact(8).enumerate() {
        let mut word = [0u8; 8];
        word.copy_from_slice(part);
        let v = u64::from_le_bytes(word);
        let hits = zero_bytes(v ^ (ONES * u64::from(delimiter)))
            | zero_bytes(v ^ (ONES * u64::from(b'\n')))
            | zero_bytes(v ^ (ONES * u64::from(b'\r')));
        // Gather each byte's top bit into one byte, byte 0's bit lowest.
        let byte = ((hits >> 7).wrapping_mul(0x0102_0408_1020_4080)) >> 56;
        mask |= byte << (8 * k);
    }
    mask
}

/// The mask of a window shorter than 64 bytes (the end of the range).
fn structural_mask_tail(window: &[u8], delimiter: u8) -> u64 {
    window
        .iter()
        .enumerate()
        .filter(|&(_, &b)| b == delimiter || b == b'\n' || b == b'\r')
        .fold(0u64, |m, (i, _)| m | 1 << i)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every record as csv (the crate) reads it: its fields, and where it starts.
    fn with_csv_crate(data: &[u8], delimiter: u8) -> Vec<(Vec<Vec<u8>>, usize)> {
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .delimiter(delimiter)
            .from_reader(data);
        let mut rec = csv::ByteRecord::new();
        let mut out = Vec::new();
        while rdr.read_byte_record(&mut rec).unwrap() {
            let mut start = rec.position().unwrap().byte() as usize;
            // csv places a record's start before the line ends that precede it.
            while start < data.len() && matches!(data[start], b'\r' | b'\n') {
                start += 1;
            }
            if start == 0 && data.starts_with(BOM) {
                start = BOM.len();
            }
            out.push((rec.iter().map(<[u8]>::to_vec).collect(), start));
        }
        out
    }

    fn with_records(data: &[u8], delimiter: u8, keep: usize) -> Vec<(Vec<Vec<u8>>, usize)> {
        let mut r = Records::new(data, delimiter, keep);
        let mut out = Vec::new();
        while let Some(rec) = r.next_record() {
            let n = rec.fields.min(keep);
            out.push(((0..n).map(|i| rec.field(i).to_vec()).collect(), rec.start));
        }
        out
    }

    fn agree(data: &[u8], delimiter: u8) {
        let want = with_csv_crate(data, delimiter);
        let keep = want.iter().map(|(f, _)| f.len()).max().unwrap_or(1) + 1;
        assert_eq!(
            with_records(data, delimiter, keep),
            want,
            "{:?}",
            String::from_utf8_lossy(data)
        );
        // Fewer fields kept: the kept ones are the same.
        let short: Vec<_> = want
            .iter()
            .map(|(f, s)| (f.iter().take(2).cloned().collect::<Vec<_>>(), *s))
            .collect();
        assert_eq!(with_records(data, delimiter, 2), short);
    }

    #[test]
    fn records_are_split_as_the_csv_crate_splits_them() {
        for data in [
            &b""[..],
            b"a",
            b"a,b\n",
            b"a,b\r\nc,d\r\n",
            b"\n\n\r\na,b\n\n\nc\n",
            b"a,\"b,c\",d\ne,\"f\ng\",h\n",
            b"a,\"b\"\"c\"x,d\n\"\"\n,\n",
            b"x\"y,z\n\"open, never closed\nmore",
            b"\xEF\xBB\xBFa,b\n\xEF\xBB\xBFc,d\n\"q\"\n\xEF\xBB\xBFe\n",
            b"a\rb\rc,d\r",
            b"   \n\t,\n",
            b"\"a\"\r\n\"b\"\r\nc\r\n\"d\"\r\r\n",
            b"a,\"b\"",
            b"a,\"b",
            b"\"",
        ] {
            agree(data, b',');
            agree(data, b';');
        }
        // Long lines, crossing many 64-byte windows, and quotes far in.
        let mut long = Vec::new();
        for i in 0..300 {
            long.extend_from_slice(format!("{i},{},{}\n", "x".repeat(i % 97), i * 7).as_bytes());
            if i % 41 == 0 {
                long.extend_from_slice(b"q,\"a\nb,c\"\"\",z\r\n");
            }
        }
        agree(&long, b',');
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(500))]

        /// Any bytes, drawn mostly from CSV's special characters, and lines long enough to
        /// cross the 64-byte windows.
        #[test]
        fn any_bytes_split_as_the_csv_crate_splits_them(
            data in proptest::collection::vec(
                proptest::prop_oneof![
                    4 => proptest::prelude::Just(b','), 2 => proptest::prelude::Just(b'"'),
                    2 => proptest::prelude::Just(b'\n'), 1 => proptest::prelude::Just(b'\r'),
                    12 => proptest::sample::select(b"abc012 .-".to_vec()),
                    1 => proptest::prelude::any::<u8>(),
                ],
                0..400,
            )
        ) {
            agree(&data, b',');
        }
    }

    #[test]
    fn the_masks_agree() {
        let mut x = 0x1234_5678_9abc_def0u64;
        for _ in 0..2000 {
            let mut w = [0u8; 64];
            for b in &mut w {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = [b',', b'\n', b'\r', b'a', b';', 0x80, 0xff, 0][(x % 8) as usize];
            }
            for d in [b',', b';', b'\t', 0x80] {
                let want = structural_mask_tail(&w, d);
                assert_eq!(structural_mask(&w, d), want);
                assert_eq!(structural_mask_swar(&w, d), want);
            }
        }
    }
}
