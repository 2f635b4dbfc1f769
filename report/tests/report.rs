//! The csv-report computation: the same answer for any cut of the file; CSV as people have
//! it (quotes with delimiters and newlines, CRLF, a BOM, blank lines, ragged rows).

use longhaul_report::{Planner, ReportError, ReportSpec, aggregate, chart, merge};
use serde_json::json;

fn spec(v: serde_json::Value) -> ReportSpec {
    let s: ReportSpec = serde_json::from_value(v).unwrap();
    s.validate().unwrap();
    s
}

/// Plans, aggregates every range and merges, feeding the planner `feed` bytes at a time.
fn run(spec: &ReportSpec, data: &[u8], chunk_bytes: u64, feed: usize) -> longhaul_report::Report {
    let mut p = Planner::new(spec.delimiter_byte().unwrap(), chunk_bytes);
    for part in data.chunks(feed.max(1)) {
        p.feed(part).unwrap();
    }
    let plan = p.finish().unwrap();
    let partials: Vec<_> = plan
        .chunks
        .iter()
        .map(|c| {
            aggregate(
                spec,
                &plan.header,
                &data[c.start as usize..c.end as usize],
                c.first_line,
            )
            .unwrap()
        })
        .collect();
    merge(spec, &partials).unwrap()
}

const MESSY: &str = "\u{feff}region,product,amount,note\r\n\
north,apple,10,plain\r\n\
south,pear,5,\"has, a comma\"\r\n\
\r\n\
north,pear,7,\"two\nlines\"\r\n\
east,apple,not-a-number,x\r\n\
north,apple,3\r\n\
,apple,1,empty region\r\n\
south,pear,2.5,\"quote \"\"inside\"\"\"\r\n";

#[test]
fn messy_csv_gives_the_right_groups() {
    let s = spec(
        json!({"source": {"object": "x"}, "groupBy": ["region"], "metrics": [{"op": "count"}, {"op": "sum", "column": "amount"}, {"op": "mean", "column": "amount"}]}),
    );
    let r = run(&s, MESSY.as_bytes(), 1 << 20, 1 << 20);
    assert_eq!(r.result["rowsRead"], json!(7));
    assert_eq!(r.result["rowsSkipped"], json!(1));
    assert_eq!(r.result["groups"], json!(3));
    assert_eq!(
        r.result["columns"],
        json!(["region", "count", "sum_amount", "mean_amount"])
    );
    assert_eq!(
        r.result["top"][0],
        json!({"region": "north", "count": 3, "sum_amount": 20, "mean_amount": 20.0 / 3.0})
    );
    assert_eq!(
        r.result["top"][1],
        json!({"region": "south", "count": 2, "sum_amount": 7.5, "mean_amount": 3.75})
    );
    assert_eq!(
        r.result["top"][2],
        json!({"region": "", "count": 1, "sum_amount": 1, "mean_amount": 1})
    );
    let warnings = r.result["warnings"].to_string();
    assert!(
        warnings.contains("line(s) 7"),
        "the skipped row's line: {warnings}"
    );
    let csv = String::from_utf8(r.csv).unwrap();
    assert!(
        csv.starts_with("region,count,sum_amount,mean_amount\n"),
        "{csv}"
    );
}

#[test]
fn any_cut_gives_the_same_answer() {
    let mut data = String::from("city,kind,qty,price\n");
    for i in 0..3000 {
        let note = if i % 7 == 0 {
            "\"multi\nline, with comma\""
        } else {
            "x"
        };
        data.push_str(&format!(
            "c{},k{},{},{}.{}\n",
            i % 13,
            i % 3,
            i % 11,
            i % 100,
            i % 10
        ));
        let _ = note;
        if i % 5 == 0 {
            data.push_str(&format!("c{},\"k{}\n\",{},1\n", i % 13, i % 3, i % 7));
        }
    }
    let s = spec(
        json!({"source": {"object": "x"}, "groupBy": ["city", "kind"], "metrics": [{"op": "count"}, {"op": "sum", "column": "qty"}, {"op": "min", "column": "price"}, {"op": "max", "column": "price"}, {"op": "mean", "column": "qty"}], "limit": 1000}),
    );
    let whole = run(&s, data.as_bytes(), 8 << 20, 1 << 20);
    for (chunk, feed) in [(1024, 333), (1024, 1), (4096, 4096), (50, 7)] {
        let cut = run(&s, data.as_bytes(), chunk, feed);
        assert_eq!(
            cut.csv, whole.csv,
            "chunkBytes {chunk}, fed {feed} at a time"
        );
        assert_eq!(cut.result, whole.result);
    }
}

#[test]
fn filters_sorting_and_totals() {
    let data = b"name,score\nann,5\nbob,9\ncid,7\ndan,1\n";
    let s = spec(
        json!({"source": {"url": "https://x"}, "groupBy": ["name"], "metrics": [{"op": "max", "column": "score"}], "filter": [{"column": "score", "op": "ge", "value": 5}], "descending": false}),
    );
    let r = run(&s, data, 1024, 1024);
    let names: Vec<_> = r.result["top"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].clone())
        .collect();
    assert_eq!(names, [json!("ann"), json!("cid"), json!("bob")]);
    let totals = spec(
        json!({"source": {"fileRef": 0}, "metrics": [{"op": "count"}, {"op": "sum", "column": "score"}]}),
    );
    let r = run(&totals, data, 1024, 1024);
    assert_eq!(r.result["top"], json!([{"count": 4, "sum_score": 22}]));
    assert_eq!(r.result["groups"], json!(1));
}

#[test]
fn unknown_columns_are_named() {
    let s = spec(
        json!({"source": {"object": "x"}, "groupBy": ["regoin"], "metrics": [{"op": "count"}]}),
    );
    let header = vec!["region".to_string()];
    let err = aggregate(&s, &header, b"a\n", 1).unwrap_err();
    assert!(
        matches!(err, ReportError::UnknownColumn { ref column, .. } if column == "regoin"),
        "{err}"
    );
    assert!(
        err.to_string().contains("region"),
        "lists the known columns: {err}"
    );
}

#[test]
fn bad_specs_name_the_field() {
    let bad = [
        (
            json!({"source": {"object": "x"}, "metrics": [{"op": "sum"}]}),
            "metrics[0].column",
        ),
        (json!({"source": {"object": "x"}, "metrics": []}), "metrics"),
        (
            json!({"source": {"object": "x"}, "metrics": [{"op": "count"}], "sortBy": "sum_x"}),
            "sortBy",
        ),
        (
            json!({"source": {"object": "x"}, "metrics": [{"op": "count"}], "delimiter": ";;"}),
            "delimiter",
        ),
        (
            json!({"source": {"object": "x"}, "metrics": [{"op": "count"}], "chunkBytes": 10}),
            "chunkBytes",
        ),
        (
            json!({"source": {"object": "x"}, "metrics": [{"op": "count"}], "groupBy": ["a", "b", "c", "d", "e"]}),
            "groupBy",
        ),
    ];
    for (v, field) in bad {
        let s: ReportSpec = serde_json::from_value(v.clone()).unwrap();
        let e = s.validate().unwrap_err();
        assert!(e.contains(field), "{v}: {e}");
    }
    assert!(
        serde_json::from_value::<ReportSpec>(
            json!({"source": {"object": "x"}, "metrics": [{"op": "median", "column": "a"}]})
        )
        .is_err()
    );
}

#[test]
fn a_header_only_or_empty_file() {
    let s = spec(json!({"source": {"object": "x"}, "metrics": [{"op": "count"}]}));
    let r = run(&s, b"a,b\n", 1024, 1024);
    assert_eq!(r.result["top"], json!([{"count": 0}]));
    let mut p = Planner::new(b',', 1024);
    p.feed(b"\n\n").unwrap();
    assert_eq!(p.finish().unwrap_err(), ReportError::NoHeader);
}

#[test]
fn the_chart_is_a_png() {
    let png = chart::bar_chart_png(
        "sum_amount by region",
        &[("north".into(), 20.0), ("south — ünïcode".into(), 7.5)],
    );
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert!(png.len() > 1000);
}

#[test]
fn skipped_rows_are_named_by_their_physical_line_however_the_file_is_cut() {
    let s = spec(
        json!({"source": {"object": "uploads/a/b.csv"}, "groupBy": ["k"],
        "metrics": [{"op": "sum", "column": "v"}]}),
    );
    // Line 1 header; blank lines 3 and 6; a quoted newline on lines 7-8; bad values on
    // lines 4, 9 and 11; CRLF endings.
    let data = "k,v\r\na,1\r\n\r\nb,x\r\nc,2\r\n\r\n\"d\ne\",3\r\nf,?\r\ng,4\r\nh,\r\n";
    for chunk in [8, 16, 32, 1 << 20] {
        let r = run(&s, data.as_bytes(), chunk, 5);
        assert_eq!(r.result["rowsSkipped"], json!(3), "chunk {chunk}");
        let warnings = r.result["warnings"].to_string();
        assert!(
            warnings.contains("line(s) 4, 9, 11"),
            "chunk {chunk}: {warnings}"
        );
    }
}

#[test]
fn metrics_over_one_column_share_it_and_count_reads_none() {
    // `count` names a column that is not a number: rows are still counted, not skipped;
    // sum, mean, min and max of `v` agree with each other whatever the order they are asked.
    let data = b"k,v,note\na,1.5,x\na,2.25,y\nb,-3,z\nb,oops,w\n";
    let s = spec(json!({"source": {"object": "x"}, "groupBy": ["k"],
        "metrics": [{"op": "max", "column": "v"}, {"op": "count", "column": "note"},
                    {"op": "sum", "column": "v"}, {"op": "min", "column": "v"}, {"op": "mean", "column": "v"}],
        "sortBy": "sum_v", "descending": true}));
    let r = run(&s, data, 1024, 1024);
    assert_eq!(r.result["rowsRead"], json!(4));
    assert_eq!(r.result["rowsSkipped"], json!(1));
    assert_eq!(
        r.result["top"],
        json!([
            {"k": "a", "max_v": 2.25, "count": 2, "sum_v": 3.75, "min_v": 1.5, "mean_v": 1.875},
            {"k": "b", "max_v": -3, "count": 1, "sum_v": -3, "min_v": -3, "mean_v": -3}
        ])
    );
}

#[test]
fn a_partial_made_for_another_spec_is_refused_not_a_panic() {
    let one =
        spec(json!({"source": {"object": "x"}, "groupBy": ["k"], "metrics": [{"op": "count"}]}));
    let two = spec(json!({"source": {"object": "x"}, "groupBy": ["k"],
        "metrics": [{"op": "sum", "column": "v"}, {"op": "max", "column": "w"}]}));
    let header = vec!["k".to_string(), "v".to_string(), "w".to_string()];
    let partial = aggregate(&one, &header, b"a,1,2\n", 2).unwrap();
    let err = merge(&two, &[partial]).unwrap_err();
    assert!(err.to_string().contains("value column"), "{err}");
}
