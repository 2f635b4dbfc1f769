//! Property tests of the CSV chunker on arbitrary bytes (quotes, delimiters, CR, LF, BOM,
//! invalid UTF-8): it never panics or loops; when it plans, the ranges tile the file after the
//! header exactly, and any cut and any feeding gives the same report as one range.

use longhaul_report::{Planner, ReportSpec, aggregate, merge};
use proptest::prelude::*;

fn spec() -> ReportSpec {
    serde_json::from_value(serde_json::json!({
        "source": {"object": "x"}, "groupBy": ["a"], "metrics": [{"op": "count"}, {"op": "sum", "column": "b"}]
    }))
    .unwrap()
}

/// Bytes drawn mostly from CSV's special characters so quoting edge cases are frequent.
fn csvish() -> impl Strategy<Value = Vec<u8>> {
    csv_with_quotes(3, 600)
}

/// `quotes` weighs the quote character against 17 for the rest; rare quotes make the long
/// quote-free spans the planner takes at memchr speed.
fn csv_with_quotes(quotes: u32, len: usize) -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        4 => Just(b','), quotes => Just(b'"'), 3 => Just(b'\n'), 1 => Just(b'\r'),
        6 => prop::sample::select(b"abxyz0123456789.-".to_vec()),
        1 => any::<u8>(),
    ];
    prop::collection::vec(byte, 0..len).prop_map(|body| {
        let mut v = b"a,b\n".to_vec();
        v.extend(body);
        v
    })
}

fn plan(data: &[u8], chunk: u64, feed: usize) -> Option<longhaul_report::Plan> {
    let mut p = Planner::new(b',', chunk);
    for part in data.chunks(feed.max(1)) {
        if p.feed(part).is_err() {
            return None;
        }
    }
    p.finish().ok()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..400), chunk in 1u64..64, feed in 1usize..50) {
        let _ = plan(&data, chunk, feed);
    }

    #[test]
    fn ranges_tile_the_file_and_every_cut_gives_one_answer(data in csvish(), chunk in 1u64..200, feed in 1usize..97) {
        ranges_tile_and_agree(&data, chunk, feed)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn rare_quotes_cut_the_same_as_frequent_ones(data in csv_with_quotes(1, 2000), chunk in 1u64..400, feed in 1usize..700) {
        ranges_tile_and_agree(&data, chunk, feed)?;
    }
}

fn ranges_tile_and_agree(data: &[u8], chunk: u64, feed: usize) -> Result<(), TestCaseError> {
    {
        let Some(p) = plan(data, chunk, feed) else {
            return Ok(());
        };
        prop_assert_eq!(p.size_bytes, data.len() as u64);
        // Tiling: consecutive, non-empty, ending at the end of the file.
        let mut at = p
            .chunks
            .first()
            .map(|c| c.start)
            .unwrap_or(data.len() as u64);
        for c in &p.chunks {
            prop_assert_eq!(c.start, at);
            prop_assert!(c.end > c.start);
            at = c.end;
        }
        prop_assert_eq!(at, data.len() as u64);
        // The same plan whatever the feeding.
        let whole_feed = plan(data, chunk, data.len()).unwrap();
        prop_assert_eq!(&whole_feed.chunks, &p.chunks);
        // Any cut aggregates to the same report as a single range.
        let s = spec();
        let run = |plan: &longhaul_report::Plan| {
            let partials: Result<Vec<_>, _> = plan
                .chunks
                .iter()
                .map(|c| {
                    aggregate(
                        &s,
                        &plan.header,
                        &data[c.start as usize..c.end as usize],
                        c.first_line,
                    )
                })
                .collect();
            partials
                .and_then(|ps| merge(&s, &ps))
                .map(|r| format!("{r:?}"))
        };
        let one = plan(data, u64::MAX / 2, data.len()).unwrap();
        match (run(&p), run(&one)) {
            (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
            (Err(_), Err(_)) => {}
            (a, b) => prop_assert!(false, "cut {:?} vs whole {:?}", a.is_ok(), b.is_ok()),
        }
    }
    Ok(())
}
