//! min/median/max of a run's figures, as every bench reports them.

use serde_json::{Value, json};

/// The median (the upper one of an even count); 0 for none.
pub fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// `{"min", "median", "max"}`, rounded to `decimals` places; zeros for none.
pub fn summary_to(xs: &[f64], decimals: i32) -> Value {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let scale = 10f64.powi(decimals);
    let r = |x: Option<&f64>| (x.copied().unwrap_or(0.0) * scale).round() / scale;
    json!({"min": r(v.first()), "median": r(v.get(v.len() / 2)), "max": r(v.last())})
}

/// min/median/max, rounded to hundredths.
pub fn summary(xs: &[f64]) -> Value {
    summary_to(xs, 2)
}
