//! Step 3, Merge: the partials → the report (exact sums and means), sorted, as the inline
//! result and `report.csv`, with the bars of the chart.

use std::collections::HashMap;

use crate::aggregate::{MAX_SKIPPED_LINES, NANO, Partial, Totals, nano_to_f64, value_columns};
use crate::{Metric, MetricOp, ReportError, ReportSpec};

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

/// A metric's value for a group of `n` rows whose column totals are `t` (`count` reads
/// none).
fn final_value(op: MetricOp, n: u64, t: Option<&Totals>) -> f64 {
    match (op, t) {
        (MetricOp::Count, _) => n as f64,
        // No column (refused by value_columns), or no rows (totals of an empty file).
        (_, None) => 0.0,
        (_, Some(_)) if n == 0 => 0.0,
        (MetricOp::Sum, Some(t)) => t.total(),
        (MetricOp::Mean, Some(t)) => match t.exact {
            // Exact division first, so the mean too does not depend on the cut.
            Some(e) => {
                let n = i128::from(n);
                nano_to_f64(e / n) + (e % n) as f64 / (n as f64 * NANO as f64)
            }
            None => t.sum / n as f64,
        },
        (MetricOp::Min, Some(t)) => t.min,
        (MetricOp::Max, Some(t)) => t.max,
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

/// A group's rows and the totals of each value column.
type Sums = (u64, Vec<Totals>);

/// The partials summed: every group's rows and totals, and the row counts.
struct Combined {
    groups: HashMap<Vec<String>, Sums>,
    rows_read: u64,
    rows_skipped: u64,
    /// The first skipped lines of the file, in order.
    skipped_lines: Vec<u64>,
}

fn combine(partials: &[Partial], width: usize, totals_only: bool) -> Result<Combined, ReportError> {
    let mut c = Combined {
        groups: HashMap::new(),
        rows_read: 0,
        rows_skipped: 0,
        skipped_lines: Vec::new(),
    };
    for p in partials {
        c.rows_read += p.rows_read;
        c.rows_skipped += p.rows_skipped;
        c.skipped_lines.extend_from_slice(&p.skipped_lines);
        for g in &p.groups {
            if g.totals.len() != width {
                return Err(ReportError::Spec(format!(
                    "a partial has {} value column(s) per group where the spec has {width}",
                    g.totals.len()
                )));
            }
            match c.groups.get_mut(&g.key) {
                Some((rows, totals)) => {
                    *rows += g.rows;
                    totals
                        .iter_mut()
                        .zip(&g.totals)
                        .for_each(|(a, b)| a.merge(b));
                }
                None => {
                    c.groups.insert(g.key.clone(), (g.rows, g.totals.clone()));
                }
            }
        }
    }
    // With no groupBy there is one row of totals, even over no rows.
    if totals_only && c.groups.is_empty() {
        c.groups.insert(Vec::new(), (0, vec![Totals::EMPTY; width]));
    }
    c.skipped_lines.sort_unstable();
    c.skipped_lines.truncate(MAX_SKIPPED_LINES);
    Ok(c)
}

/// One line of the report: the group's key and one value per metric.
type Row = (Vec<String>, Vec<f64>);

/// The groups' final values, sorted by the sort metric (then by key, so ties are stable).
fn sorted_rows(
    spec: &ReportSpec,
    groups: HashMap<Vec<String>, Sums>,
    slots: &[Option<usize>],
    sort_idx: usize,
) -> Vec<Row> {
    let mut rows: Vec<Row> = groups
        .into_iter()
        .map(|(k, (n, totals))| {
            let v = spec
                .metrics
                .iter()
                .zip(slots)
                .map(|(m, slot)| final_value(m.op, n, slot.map(|s| &totals[s])))
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
    rows
}

/// `report.csv`: the header, then every row.
fn write_csv(spec: &ReportSpec, head: &[String], rows: &[Row]) -> Result<Vec<u8>, ReportError> {
    let csv_err = |e: csv::Error| ReportError::Csv(e.to_string());
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(head).map_err(csv_err)?;
    for (k, v) in rows {
        let mut rec: Vec<String> = k.clone();
        rec.extend(
            spec.metrics
                .iter()
                .zip(v)
                .map(|(m, x)| csv_number(m.op, *x)),
        );
        w.write_record(&rec).map_err(csv_err)?;
    }
    w.into_inner()
        .map_err(|e| ReportError::Csv(e.error().to_string()))
}

/// The first `limit` rows as JSON objects (column or metric name → value).
fn top_json(spec: &ReportSpec, names: &[String], rows: &[Row]) -> Vec<serde_json::Value> {
    rows.iter()
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
        .collect()
}

/// The chart's bars: the top groups (at most 20), labelled by their key.
fn chart_bars(spec: &ReportSpec, rows: &[Row], sort_idx: usize) -> Vec<(String, f64)> {
    rows.iter()
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
        .collect()
}

/// Merges the partials into the report.
pub fn merge(spec: &ReportSpec, partials: &[Partial]) -> Result<Report, ReportError> {
    let (value_names, slots) = value_columns(spec)?;
    let combined = combine(partials, value_names.len(), spec.group_by.is_empty())?;
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
    let rows = sorted_rows(spec, combined.groups, &slots, sort_idx);
    let mut head: Vec<String> = spec.group_by.clone();
    head.extend(names.iter().cloned());
    let csv = write_csv(spec, &head, &rows)?;
    let mut warnings = Vec::new();
    if combined.rows_skipped > 0 {
        warnings.push(format!(
            "{} row(s) skipped because a metric field was not a number (first at line(s) {})",
            combined.rows_skipped,
            combined
                .skipped_lines
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let result = serde_json::json!({
        "rowsRead": combined.rows_read,
        "rowsSkipped": combined.rows_skipped,
        "groups": rows.len(),
        "columns": head,
        "top": top_json(spec, &names, &rows),
        "warnings": warnings,
    });
    Ok(Report {
        result,
        chart_bars: chart_bars(spec, &rows, sort_idx),
        csv,
        sort_metric,
    })
}
