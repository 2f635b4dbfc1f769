//! The response budget. ChatGPT refuses a GPT Action response over 100,000 characters, so no
//! response of any operation may grow past that, whatever its parameters ask for: pages are
//! cut by size as well as by count (the cursor goes on from there), a result too large to
//! show inline is a file, and file links that do not fit are counted instead of listed. This
//! module is the one place that decides; the spec's descriptions say so.
//!
//! Sizes are measured in bytes of the JSON, which is never fewer than its characters.

use serde::Serialize;

/// ChatGPT's limit for an Action response, in characters.
pub const MAX_RESPONSE_CHARS: usize = 100_000;

/// What a response body may use: the limit less room for what wraps it (MCP's JSON-RPC
/// envelope and its text copy of a short message).
pub const RESPONSE_BUDGET: usize = 80_000;

/// A job's result larger than this is kept as a file (`result.json`) and getJob shows a note
/// in its place.
pub const MAX_INLINE_RESULT_CHARS: usize = 32 * 1024;

/// Files ChatGPT takes in `openaiFileResponse`: at most this many, none over this size, and
/// no images or video (it shows those in no way from an Action).
pub const MAX_OPENAI_FILES: usize = 10;
pub const MAX_OPENAI_FILE_BYTES: u64 = 10 * 1024 * 1024;

/// The JSON length of `v`, counted as it is written, without keeping it.
pub fn json_len<T: Serialize + ?Sized>(v: &T) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    serde_json::to_writer(&mut counter, v).map_or(usize::MAX, |()| counter.0)
}

/// Keeps the longest prefix of `items` whose JSON fits in `budget` bytes (with `fixed` bytes
/// already spent on the rest of the response). Returns whether it cut anything. At least one
/// item is kept when the first alone fits.
pub fn fit_prefix<T: Serialize>(items: &mut Vec<T>, fixed: usize, budget: usize) -> bool {
    let mut used = fixed + 2;
    let mut keep = 0;
    for item in items.iter() {
        let len = json_len(item) + 1;
        if used + len > budget {
            break;
        }
        used += len;
        keep += 1;
    }
    let cut = keep < items.len();
    items.truncate(keep);
    cut
}

/// `s` cut to at most `max` characters, with an ellipsis when cut.
pub fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_fits_and_the_cut_is_reported() {
        let mut items: Vec<String> = (0..100).map(|i| format!("{i:0>98}")).collect();
        // 100 + 1 bytes each; 2 for the brackets.
        assert!(fit_prefix(&mut items, 0, 1_000));
        assert_eq!(items.len(), 9);
        let mut few = vec!["a".to_string()];
        assert!(!fit_prefix(&mut few, 0, 1_000));
        assert_eq!(few.len(), 1);
        let mut none = vec!["x".repeat(2_000)];
        assert!(fit_prefix(&mut none, 0, 1_000));
        assert!(none.is_empty());
    }

    #[test]
    fn clipping_counts_characters() {
        assert_eq!(clip("héllo", 10), "héllo");
        assert_eq!(clip("héllo wörld", 5), "héll…");
    }
}
