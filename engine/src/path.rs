//! JSONPath as Amazon States Language uses it: `$` paths into the state's data and `$$`
//! paths into the context object. Paths are compiled once, at parse time.
//!
//! Supported: `.name`, `['name']`, `[n]`, `[-n]`, `[*]`, `.*`, `[a:b]`, `[a,b]`, and `..name`
//! (deep scan). Reference paths (ResultPath, `...Path` fields of Choice and Wait) may only
//! use names and non-negative indices and select a single node.

use serde_json::{Map, Value};

/// Which document a path reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Root {
    /// `$`: the state's data.
    Data,
    /// `$$`: the context object.
    Context,
}

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Field(String),
    Index(i64),
    Wildcard,
    Slice(Option<i64>, Option<i64>),
    Union(Vec<i64>),
    DeepField(String),
}

/// A compiled path.
#[derive(Debug, Clone, PartialEq)]
pub struct Path {
    pub root: Root,
    steps: Vec<Step>,
    text: String,
}

impl std::fmt::Display for Path {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl Path {
    pub fn parse(text: &str) -> Result<Path, String> {
        let (root, rest) = if let Some(r) = text.strip_prefix("$$") {
            (Root::Context, r)
        } else if let Some(r) = text.strip_prefix('$') {
            (Root::Data, r)
        } else {
            return Err(format!("{text:?} is not a path: it must start with '$'"));
        };
        let mut steps = Vec::new();
        let b = rest.as_bytes();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'.' => {
                    let deep = b.get(i + 1) == Some(&b'.');
                    i += if deep { 2 } else { 1 };
                    if b.get(i) == Some(&b'*') {
                        if deep {
                            return Err(format!("{text:?}: '..*' is not supported"));
                        }
                        steps.push(Step::Wildcard);
                        i += 1;
                        continue;
                    }
                    let start = i;
                    while i < b.len() && b[i] != b'.' && b[i] != b'[' {
                        i += 1;
                    }
                    let name = &rest[start..i];
                    if name.is_empty() {
                        return Err(format!("{text:?}: empty field name"));
                    }
                    if name
                        .chars()
                        .any(|c| c.is_whitespace() || "()'\"?@]".contains(c))
                    {
                        return Err(format!("{text:?}: bad character in field name {name:?}"));
                    }
                    steps.push(if deep {
                        Step::DeepField(name.to_string())
                    } else {
                        Step::Field(name.to_string())
                    });
                }
                b'[' => {
                    let close =
                        find_close(rest, i).ok_or_else(|| format!("{text:?}: '[' without ']'"))?;
                    let inner = rest[i + 1..close].trim();
                    steps.push(parse_bracket(inner).map_err(|e| format!("{text:?}: {e}"))?);
                    i = close + 1;
                }
                _ => {
                    return Err(format!(
                        "{text:?}: unexpected character at {}",
                        i + 1 + if root == Root::Context { 2 } else { 1 }
                    ));
                }
            }
        }
        Ok(Path {
            root,
            steps,
            text: text.to_string(),
        })
    }

    /// A reference path: names and indices only, one node.
    pub fn parse_reference(text: &str) -> Result<Path, String> {
        let p = Path::parse(text)?;
        if !p.is_reference() {
            return Err(format!(
                "{text:?} is not a reference path (only field names and non-negative indices)"
            ));
        }
        Ok(p)
    }

    pub fn is_reference(&self) -> bool {
        self.steps.iter().all(|s| match s {
            Step::Field(_) => true,
            Step::Index(n) => *n >= 0,
            _ => false,
        })
    }

    pub fn is_root(&self) -> bool {
        self.steps.is_empty()
    }

    /// Whether the path can select several nodes (then its value is an array of them).
    fn is_multi(&self) -> bool {
        self.steps.iter().any(|s| {
            matches!(
                s,
                Step::Wildcard | Step::Slice(..) | Step::Union(_) | Step::DeepField(_)
            )
        })
    }

    /// Selects from `doc`. `None` when a definite path matches nothing.
    pub fn select(&self, doc: &Value) -> Option<Value> {
        if !self.is_multi() {
            let mut cur = doc;
            for s in &self.steps {
                cur = match (s, cur) {
                    (Step::Field(f), Value::Object(m)) => m.get(f)?,
                    (Step::Index(n), Value::Array(a)) => {
                        let idx = if *n < 0 { a.len() as i64 + n } else { *n };
                        a.get(usize::try_from(idx).ok()?)?
                    }
                    _ => return None,
                };
            }
            return Some(cur.clone());
        }
        let mut nodes: Vec<&Value> = vec![doc];
        for s in &self.steps {
            let mut next = Vec::new();
            for n in nodes {
                apply_step(s, n, &mut next);
            }
            nodes = next;
        }
        Some(Value::Array(nodes.into_iter().cloned().collect()))
    }

    /// Selects by reference, borrowing (for Choice comparisons).
    pub fn select_ref<'a>(&self, doc: &'a Value) -> Option<&'a Value> {
        let mut cur = doc;
        for s in &self.steps {
            cur = match (s, cur) {
                (Step::Field(f), Value::Object(m)) => m.get(f)?,
                (Step::Index(n), Value::Array(a)) => a.get(usize::try_from(*n).ok()?)?,
                _ => return None,
            };
        }
        Some(cur)
    }

    /// ResultPath: puts `value` at this reference path inside `doc`, creating missing
    /// objects. Fails when a step meets a non-object (or a missing array element).
    pub fn insert(&self, doc: Value, value: Value) -> Result<Value, String> {
        if self.steps.is_empty() {
            return Ok(value);
        }
        let mut doc = doc;
        if !doc.is_object() && !matches!(self.steps.first(), Some(Step::Index(_))) {
            return Err(format!(
                "cannot apply ResultPath {} to a non-object input",
                self.text
            ));
        }
        let mut cur = &mut doc;
        let last = self.steps.len() - 1;
        for (i, s) in self.steps.iter().enumerate() {
            match s {
                Step::Field(f) => {
                    let Value::Object(m) = cur else {
                        return Err(format!(
                            "ResultPath {}: {f:?} is inside a non-object",
                            self.text
                        ));
                    };
                    if i == last {
                        m.insert(f.clone(), value);
                        return Ok(doc);
                    }
                    cur = m
                        .entry(f.clone())
                        .or_insert_with(|| Value::Object(Map::new()));
                    if !cur.is_object() && !cur.is_array() {
                        return Err(format!("ResultPath {}: {f:?} is not an object", self.text));
                    }
                }
                Step::Index(n) => {
                    let Value::Array(a) = cur else {
                        return Err(format!(
                            "ResultPath {}: index [{n}] into a non-array",
                            self.text
                        ));
                    };
                    let idx = usize::try_from(*n)
                        .map_err(|_| format!("ResultPath {}: negative index", self.text))?;
                    let Some(slot) = a.get_mut(idx) else {
                        return Err(format!(
                            "ResultPath {}: index [{n}] is out of range",
                            self.text
                        ));
                    };
                    if i == last {
                        *slot = value;
                        return Ok(doc);
                    }
                    cur = slot;
                }
                _ => return Err(format!("ResultPath {} is not a reference path", self.text)),
            }
        }
        Ok(doc)
    }
}

fn find_close(s: &str, open: usize) -> Option<usize> {
    let b = s.as_bytes();
    let mut quote: Option<u8> = None;
    let mut i = open + 1;
    while i < b.len() {
        match (quote, b[i]) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), b'\\') => i += 1,
            (None, b'\'') | (None, b'"') => quote = Some(b[i]),
            (None, b']') => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

fn parse_bracket(inner: &str) -> Result<Step, String> {
    if inner == "*" {
        return Ok(Step::Wildcard);
    }
    if (inner.starts_with('\'') && inner.ends_with('\'') && inner.len() >= 2)
        || (inner.starts_with('"') && inner.ends_with('"') && inner.len() >= 2)
    {
        let name = inner[1..inner.len() - 1]
            .replace("\\'", "'")
            .replace("\\\"", "\"");
        return Ok(Step::Field(name));
    }
    if inner.starts_with('?') || inner.starts_with('(') {
        return Err("filter and script expressions are not supported".into());
    }
    if let Some((a, b)) = inner.split_once(':') {
        let num = |s: &str| -> Result<Option<i64>, String> {
            let s = s.trim();
            if s.is_empty() {
                Ok(None)
            } else {
                s.parse()
                    .map(Some)
                    .map_err(|_| format!("bad slice bound {s:?}"))
            }
        };
        if b.contains(':') {
            return Err("slice steps are not supported".into());
        }
        return Ok(Step::Slice(num(a)?, num(b)?));
    }
    if inner.contains(',') {
        let idx: Result<Vec<i64>, _> = inner.split(',').map(|s| s.trim().parse::<i64>()).collect();
        return idx
            .map(Step::Union)
            .map_err(|_| format!("bad index list [{inner}]"));
    }
    inner
        .parse::<i64>()
        .map(Step::Index)
        .map_err(|_| format!("bad bracket expression [{inner}]"))
}

fn apply_step<'a>(s: &Step, n: &'a Value, out: &mut Vec<&'a Value>) {
    match (s, n) {
        (Step::Field(f), Value::Object(m)) => out.extend(m.get(f)),
        (Step::Index(i), Value::Array(a)) => {
            let idx = if *i < 0 { a.len() as i64 + i } else { *i };
            if let Ok(idx) = usize::try_from(idx) {
                out.extend(a.get(idx));
            }
        }
        (Step::Wildcard, Value::Array(a)) => out.extend(a.iter()),
        (Step::Wildcard, Value::Object(m)) => out.extend(m.values()),
        (Step::Slice(a, b), Value::Array(arr)) => {
            let len = arr.len() as i64;
            let norm = |x: i64| if x < 0 { (len + x).max(0) } else { x.min(len) };
            let start = a.map_or(0, norm);
            let end = b.map_or(len, norm);
            if start < end {
                out.extend(arr[start as usize..end as usize].iter());
            }
        }
        (Step::Union(idx), Value::Array(a)) => {
            for i in idx {
                let i = if *i < 0 { a.len() as i64 + i } else { *i };
                if let Ok(i) = usize::try_from(i) {
                    out.extend(a.get(i));
                }
            }
        }
        (Step::DeepField(f), _) => deep(f, n, out, 0),
        _ => {}
    }
}

fn deep<'a>(f: &str, n: &'a Value, out: &mut Vec<&'a Value>, depth: usize) {
    if depth > 512 {
        return;
    }
    match n {
        Value::Object(m) => {
            if let Some(v) = m.get(f) {
                out.push(v);
            }
            for v in m.values() {
                deep(f, v, out, depth + 1);
            }
        }
        Value::Array(a) => {
            for v in a {
                deep(f, v, out, depth + 1);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selects_like_aws() {
        let doc = json!({"a": {"b": [1, 2, 3]}, "c d": 4, "items": [{"x": 1}, {"x": 2}]});
        let sel = |p: &str| Path::parse(p).unwrap().select(&doc);
        assert_eq!(sel("$"), Some(doc.clone()));
        assert_eq!(sel("$.a.b[1]"), Some(json!(2)));
        assert_eq!(sel("$.a.b[-1]"), Some(json!(3)));
        assert_eq!(sel("$['c d']"), Some(json!(4)));
        assert_eq!(sel("$.items[*].x"), Some(json!([1, 2])));
        assert_eq!(sel("$.a.b[0:2]"), Some(json!([1, 2])));
        assert_eq!(sel("$..x"), Some(json!([1, 2])));
        assert_eq!(sel("$.missing"), None);
    }

    #[test]
    fn inserts_creating_missing_objects() {
        let p = Path::parse_reference("$.a.b.c").unwrap();
        assert_eq!(
            p.insert(json!({"x": 1}), json!(5)).unwrap(),
            json!({"x": 1, "a": {"b": {"c": 5}}})
        );
        assert!(p.insert(json!({"a": 1}), json!(5)).is_err());
        assert!(Path::parse_reference("$.a[*]").is_err());
    }

    #[test]
    fn rejects_bad_paths() {
        for bad in ["", "a.b", "$.", "$[", "$.a[?(@.x)]", "$..", "$ .a"] {
            assert!(Path::parse(bad).is_err(), "{bad}");
        }
    }
}
