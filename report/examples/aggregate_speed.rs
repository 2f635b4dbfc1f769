//! Times plan, aggregate and merge over a generated CSV in one thread: a profiling aid for
//! the computation alone (the benchmark is `longhaul-bench csv`). `cargo run --release -p
//! longhaul-report --example aggregate_speed -- MEGABYTES [quoted]`; with `quoted` every
//! row's last field is quoted and holds a comma (the csv-core path).
use std::time::Instant;

use longhaul_report::{Planner, ReportSpec, aggregate, merge};

fn generate(megabytes: u64, quoted: bool) -> Vec<u8> {
    let mut w = Vec::with_capacity((megabytes << 20) as usize + 100);
    w.extend_from_slice(b"id,region,product,channel,amount,note\n");
    let regions = [
        "north", "south", "east", "west", "centre", "alps", "coast", "lakes", "hills", "plains",
    ];
    let channels = ["web", "store", "phone"];
    let (mut rows, mut x) = (0u64, 0x9e37_79b9_7f4a_7c15u64);
    while (w.len() as u64) < megabytes << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        use std::io::Write;
        writeln!(
            w,
            "{rows},{},p{:02},{},{}.{:02},{}",
            regions[(x % 10) as usize],
            (x >> 8) % 25,
            channels[((x >> 16) % 3) as usize],
            (x >> 24) % 10_000,
            (x >> 40) % 100,
            if quoted {
                format!("\"order, {}\"", x % 1_000_000)
            } else {
                format!("order {}", x % 1_000_000)
            }
        )
        .unwrap();
        rows += 1;
    }
    w
}

fn main() {
    let mb: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(256);
    let quoted = std::env::args().nth(2).as_deref() == Some("quoted");
    let data = generate(mb, quoted);
    let spec: ReportSpec = serde_json::from_value(serde_json::json!({
        "source": {"object": "x"}, "groupBy": ["region", "product", "channel"],
        "metrics": [{"op": "count"}, {"op": "sum", "column": "amount"}, {"op": "mean", "column": "amount"},
                    {"op": "min", "column": "amount"}, {"op": "max", "column": "amount"}]}))
    .unwrap();
    for _ in 0..3 {
        let t = Instant::now();
        let mut p = Planner::new(b',', 8 << 20);
        for part in data.chunks(8 << 20) {
            p.feed(part).unwrap();
        }
        let plan = p.finish().unwrap();
        let plan_s = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let partials: Vec<_> = plan
            .chunks
            .iter()
            .map(|c| {
                aggregate(
                    &spec,
                    &plan.header,
                    &data[c.start as usize..c.end as usize],
                    c.first_line,
                )
                .unwrap()
            })
            .collect();
        let agg_s = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let r = merge(&spec, &partials).unwrap();
        let merge_s = t.elapsed().as_secs_f64();
        let mib = data.len() as f64 / 1048576.0;
        println!(
            "plan {:.0} MiB/s, aggregate {:.0} MiB/s ({:.3} s), merge {:.4} s, rows {}",
            mib / plan_s,
            mib / agg_s,
            agg_s,
            merge_s,
            r.result["rowsRead"]
        );
    }
}
