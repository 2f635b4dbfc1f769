//! The metric fields' numbers: a plain decimal exactly, in 10^-9 units (so sums do not
//! depend on how the file was cut), with its f64; anything else Rust's f64 parser takes,
//! as an f64 alone.

use super::NANO;

/// A metric field's value: the f64, and the exact value in 10^-9 units when the field is a
/// plain decimal.
pub(crate) type Number = (f64, Option<i128>);

/// Parses a metric field. The common case (ASCII digits, at most one sign and point, at
/// most 18 integer and 9 fraction digits, no space around) is read here in one pass, in
/// u64s; everything else goes to [`parse_number_text`], which this must agree with.
#[inline]
pub(crate) fn parse_number(field: &[u8]) -> Option<Number> {
    let (Some(&first), Some(&last)) = (field.first(), field.last()) else {
        return None;
    };
    if !plain_edge(first) || !plain_edge(last) {
        return parse_number_text(field);
    }
    let (neg, digits) = match first {
        b'-' => (true, &field[1..]),
        b'+' => (false, &field[1..]),
        _ => (false, field),
    };
    let (mut int, mut int_len, mut i) = (0u64, 0usize, 0usize);
    while i < digits.len() && digits[i].is_ascii_digit() {
        int = int * 10 + u64::from(digits[i] - b'0');
        int_len += 1;
        i += 1;
        if int_len > 18 {
            return parse_number_text(field);
        }
    }
    let (mut frac, mut frac_len) = (0u64, 0u32);
    if i < digits.len() {
        if digits[i] != b'.' {
            return parse_number_text(field);
        }
        for &c in &digits[i + 1..] {
            if !c.is_ascii_digit() || frac_len == 9 {
                return parse_number_text(field);
            }
            frac = frac * 10 + u64::from(c - b'0');
            frac_len += 1;
        }
    }
    if int_len == 0 && frac_len == 0 {
        return parse_number_text(field);
    }
    // Below 10^18 · 10^9 + 10^9: fits an i128 with room; the f64 is exact below 2^53.
    let v = i128::from(int) * NANO + i128::from(frac * 10u64.pow(9 - frac_len));
    let v = if neg { -v } else { v };
    if v.unsigned_abs() >= 1 << 53 {
        return parse_number_text(field);
    }
    Some(((v as i64) as f64 / NANO as f64, Some(v)))
}

/// Whether a field may start or end with this byte and need no trimming or UTF-8 check:
/// ASCII and not white space (what `str::trim` removes of ASCII: `\t`..`\r` and space).
#[inline]
pub(crate) fn plain_edge(b: u8) -> bool {
    b < 0x80 && !matches!(b, b'\t'..=b'\r' | b' ')
}

/// Parses a metric field as text: trimmed, a plain decimal exactly, else as f64.
pub(crate) fn parse_number_text(field: &[u8]) -> Option<Number> {
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

#[cfg(test)]
mod tests {
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

    /// The one-pass parser gives what the text parser gives, on fields built from the
    /// characters that matter (digits, signs, points, exponents, spaces, a no-break space,
    /// invalid UTF-8) and on long digit runs around the 18- and 9-digit limits.
    #[test]
    fn the_fast_path_agrees_with_the_text_parser() {
        let alphabet: [&[u8]; 12] = [
            b"0",
            b"7",
            b"9",
            b".",
            b"-",
            b"+",
            b"e",
            b" ",
            b"\t",
            "\u{a0}".as_bytes(),
            b"\xff",
            b"123456789",
        ];
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..200_000 {
            let len = next() % 12;
            let mut field = Vec::new();
            for _ in 0..len {
                field.extend_from_slice(alphabet[(next() % alphabet.len() as u64) as usize]);
            }
            let got = parse_number(&field);
            let want = parse_number_text(&field);
            assert_eq!(
                got.map(|(f, e)| (f.to_bits(), e)),
                want.map(|(f, e)| (f.to_bits(), e)),
                "{:?}",
                String::from_utf8_lossy(&field)
            );
        }
    }
}
