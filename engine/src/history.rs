//! History events' details: written once, as JSON text, from references to the engine's
//! values (no copy of the state's data), with big inputs and outputs cut to a preview.

use serde_json::Value;

/// Largest input/output kept whole in a history event; bigger ones keep a prefix of their
/// JSON text. History is for reading, and whole copies of big states would make a long
/// execution's history cost more memory than its data.
pub(crate) const HISTORY_DETAIL_BYTES: usize = 4096;

/// One field of an event's details, serialised from a reference (no copy of the value).
pub(crate) enum Field<'a> {
    Str(&'a str),
    OptStr(Option<&'a str>),
    Num(u64),
    /// The whole value (the execution's input and output, as AWS records them).
    Json(&'a Value),
    /// A state's data: itself when small, else a truncated JSON preview.
    Brief(&'a Value),
}

impl serde::Serialize for Field<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Field::Str(v) => s.serialize_str(v),
            Field::OptStr(v) => v.serialize(s),
            Field::Num(v) => s.serialize_u64(*v),
            Field::Json(v) => v.serialize(s),
            Field::Brief(v) if fits(v) => v.serialize(s),
            Field::Brief(v) => {
                use serde::ser::SerializeMap;
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("truncated", &true)?;
                m.serialize_entry("preview", &preview(v))?;
                m.end()
            }
        }
    }
}

/// An event's details: a JSON object of `fields`, in this order.
pub(crate) fn details(fields: &[(&str, Field<'_>)]) -> Box<serde_json::value::RawValue> {
    struct Fields<'a, 'b>(&'a [(&'a str, Field<'b>)]);
    impl serde::Serialize for Fields<'_, '_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeMap;
            let mut m = s.serialize_map(Some(self.0.len()))?;
            for (k, v) in self.0 {
                m.serialize_entry(k, v)?;
            }
            m.end()
        }
    }
    // Strings, numbers and JSON values always serialise; the fallback is never taken.
    serde_json::value::to_raw_value(&Fields(fields)).unwrap_or_else(|_| no_details())
}

/// Details of an event that has none.
pub(crate) fn no_details() -> Box<serde_json::value::RawValue> {
    serde_json::value::RawValue::from_string("{}".into()).unwrap_or_else(|_| unreachable!())
}

/// Largest state result or output AWS allows (256 KiB): more is States.DataLimitExceeded.
pub(crate) const MAX_PAYLOAD_BYTES: usize = 256 * 1024;

/// `v` serialises within [`HISTORY_DETAIL_BYTES`].
fn fits(v: &Value) -> bool {
    within_bytes(v, HISTORY_DETAIL_BYTES)
}

/// `v` serialises within about `limit` bytes (strings counted unescaped, numbers as 8).
/// Stops walking once over: a big value costs no more than `limit`.
pub(crate) fn within_bytes(v: &Value, limit: usize) -> bool {
    fn size(v: &Value, budget: usize) -> usize {
        match v {
            Value::Null | Value::Bool(_) => 5,
            Value::Number(_) => 8,
            Value::String(s) => s.len() + 2,
            Value::Array(a) => {
                let mut n = 2;
                for x in a {
                    n += size(x, budget.saturating_sub(n)) + 1;
                    if n > budget {
                        break;
                    }
                }
                n
            }
            Value::Object(m) => {
                let mut n = 2;
                for (k, x) in m {
                    n += k.len() + 3 + size(x, budget.saturating_sub(n));
                    if n > budget {
                        break;
                    }
                }
                n
            }
        }
    }
    size(v, limit) <= limit
}

/// The first [`HISTORY_DETAIL_BYTES`] of `v`'s JSON text.
fn preview(v: &Value) -> String {
    struct Limited(Vec<u8>);
    impl std::io::Write for Limited {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.0.len() >= HISTORY_DETAIL_BYTES {
                return Err(std::io::Error::other("full"));
            }
            let n = buf.len().min(HISTORY_DETAIL_BYTES - self.0.len());
            self.0.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut w = Limited(Vec::with_capacity(HISTORY_DETAIL_BYTES));
    let _ = serde_json::to_writer(&mut w, v);
    String::from_utf8_lossy(&w.0).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn history_details_are_bounded() {
        let small = json!({"a": [1, 2, 3], "b": "text"});
        let big = json!({"rows": vec!["x".repeat(100); 1000]});
        let d: Value = serde_json::from_str(
            details(&[
                ("name", Field::Str("S")),
                ("small", Field::Brief(&small)),
                ("big", Field::Brief(&big)),
                ("whole", Field::Json(&big)),
                ("none", Field::OptStr(None)),
                ("n", Field::Num(7)),
            ])
            .get(),
        )
        .unwrap();
        assert_eq!(d["name"], "S");
        assert_eq!(d["small"], small);
        assert_eq!(d["big"]["truncated"], json!(true));
        let preview = d["big"]["preview"].as_str().unwrap();
        assert!(preview.len() <= HISTORY_DETAIL_BYTES && preview.starts_with("{\"rows\":[\"xxx"));
        assert_eq!(d["whole"], big);
        assert_eq!(d["none"], Value::Null);
        assert_eq!(d["n"], 7);
        assert_eq!(no_details().get(), "{}");
    }
}
