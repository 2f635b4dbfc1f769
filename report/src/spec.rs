//! The csv-report input: what to group by, what to compute, which rows to keep.

use serde::{Deserialize, Serialize};

/// Where the CSV comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum Source {
    /// An object from createUpload.
    Object { object: String },
    /// An entry of the request's openaiFileIdRefs.
    FileRef {
        #[serde(rename = "fileRef")]
        file_ref: usize,
    },
    /// An https URL.
    Url { url: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricOp {
    Count,
    Sum,
    Mean,
    Min,
    Max,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metric {
    pub op: MetricOp,
    #[serde(default)]
    pub column: Option<String>,
}

impl Metric {
    /// `count`, or `OP_COLUMN` (`sum_amount`).
    pub fn name(&self) -> String {
        match (&self.op, &self.column) {
            (MetricOp::Count, _) => "count".to_string(),
            (op, Some(c)) => format!(
                "{}_{c}",
                serde_json::to_value(op)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default()
            ),
            (_, None) => "invalid".to_string(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FilterOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Contains,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    pub column: String,
    pub op: FilterOp,
    /// A string, or a number (then comparisons are numeric).
    pub value: serde_json::Value,
}

impl Filter {
    /// Whether a field passes. A number compares numerically when the field is a number.
    pub fn matches(&self, field: &[u8]) -> bool {
        let text = String::from_utf8_lossy(field);
        let text = text.trim();
        if self.op == FilterOp::Contains {
            return match &self.value {
                serde_json::Value::String(s) => text.contains(s.as_str()),
                other => text.contains(&other.to_string()),
            };
        }
        let ord = match &self.value {
            serde_json::Value::Number(n) => {
                let (Some(want), Ok(got)) = (n.as_f64(), text.parse::<f64>()) else {
                    // Not a number: only "ne" holds.
                    return self.op == FilterOp::Ne;
                };
                match got.partial_cmp(&want) {
                    Some(o) => o,
                    None => return self.op == FilterOp::Ne,
                }
            }
            serde_json::Value::String(s) => text.cmp(s.as_str()),
            serde_json::Value::Bool(b) => text.cmp(if *b { "true" } else { "false" }),
            _ => return false,
        };
        use std::cmp::Ordering::*;
        match self.op {
            FilterOp::Eq => ord == Equal,
            FilterOp::Ne => ord != Equal,
            FilterOp::Lt => ord == Less,
            FilterOp::Le => ord != Greater,
            FilterOp::Gt => ord == Greater,
            FilterOp::Ge => ord != Less,
            FilterOp::Contains => false,
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_limit() -> usize {
    20
}

fn default_delimiter() -> String {
    ",".to_string()
}

/// The csv-report job's input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReportSpec {
    pub source: Source,
    #[serde(default)]
    pub group_by: Vec<String>,
    pub metrics: Vec<Metric>,
    #[serde(default)]
    pub filter: Vec<Filter>,
    #[serde(default)]
    pub sort_by: Option<String>,
    #[serde(default = "default_true")]
    pub descending: bool,
    #[serde(default = "default_limit")]
    pub limit: usize,
    #[serde(default = "default_delimiter")]
    pub delimiter: String,
    #[serde(default)]
    pub chunk_bytes: Option<u64>,
}

/// Default size of a range: 8 MiB.
pub const DEFAULT_CHUNK_BYTES: u64 = 8 << 20;

impl ReportSpec {
    /// The delimiter as one byte.
    pub fn delimiter_byte(&self) -> Result<u8, String> {
        match self.delimiter.as_bytes() {
            [b] if *b != b'"' && *b != b'\n' && *b != b'\r' => Ok(*b),
            _ => {
                Err("delimiter must be one ASCII character other than a quote or a newline".into())
            }
        }
    }

    pub fn chunk_bytes(&self) -> u64 {
        self.chunk_bytes.unwrap_or(DEFAULT_CHUNK_BYTES)
    }

    /// Checks what a schema cannot: metric columns, names, sortBy. Errors name the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.group_by.len() > 4 {
            return Err("input.groupBy: at most 4 columns".into());
        }
        if self.metrics.is_empty() || self.metrics.len() > 10 {
            return Err("input.metrics: 1 to 10 metrics".into());
        }
        for (i, m) in self.metrics.iter().enumerate() {
            match (m.op, &m.column) {
                (MetricOp::Count, _) => {}
                (_, None) => {
                    return Err(format!(
                        "input.metrics[{i}].column: {:?} needs a column",
                        m.op
                    ));
                }
                (_, Some(c)) if c.is_empty() => {
                    return Err(format!("input.metrics[{i}].column: must not be empty"));
                }
                _ => {}
            }
        }
        let names: Vec<String> = self.metrics.iter().map(Metric::name).collect();
        for (i, n) in names.iter().enumerate() {
            if names[..i].contains(n) {
                return Err(format!("input.metrics[{i}]: {n} is asked for twice"));
            }
        }
        if let Some(s) = &self.sort_by
            && !names.contains(s)
        {
            return Err(format!(
                "input.sortBy: {s:?} is not one of the metrics ({})",
                names.join(", ")
            ));
        }
        if !(1..=1000).contains(&self.limit) {
            return Err("input.limit: must be from 1 to 1000".into());
        }
        self.delimiter_byte()
            .map_err(|e| format!("input.delimiter: {e}"))?;
        if let Some(c) = self.chunk_bytes
            && !(1024..=(1 << 30)).contains(&c)
        {
            return Err("input.chunkBytes: must be from 1024 to 1073741824".into());
        }
        if self.filter.len() > 10 {
            return Err("input.filter: at most 10 filters".into());
        }
        for (i, f) in self.filter.iter().enumerate() {
            if !(f.value.is_string() || f.value.is_number() || f.value.is_boolean()) {
                return Err(format!(
                    "input.filter[{i}].value: must be a string, number or boolean"
                ));
            }
        }
        Ok(())
    }
}
