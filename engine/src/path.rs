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

/// A path's first step when it names a workflow variable (`$name.field`): the name.
#[derive(Debug, Clone, PartialEq)]
pub struct Variable(pub String);

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Field(String),
    Index(i64),
    Wildcard,
    Slice(Option<i64>, Option<i64>),
    Union(Vec<i64>),
    DeepField(String),
    /// `[?(...)]`: the children that match.
    Filter(Box<Filter>),
}

/// A filter expression (`[?(@.status == 0 && @.name)]`), as Jayway JsonPath (AWS's)
/// reads it: comparisons of `@` paths and literals, `&&`, `||`, `!`, parentheses; a bare
/// `@` path tests that the node exists.
#[derive(Debug, Clone, PartialEq)]
enum Filter {
    Or(Vec<Filter>),
    And(Vec<Filter>),
    Not(Box<Filter>),
    Exists(Vec<Step>),
    Compare(Operand, CmpOp, Operand),
}

#[derive(Debug, Clone, PartialEq)]
enum Operand {
    /// `@` followed by names and indices.
    Current(Vec<Step>),
    Literal(Value),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A compiled path.
#[derive(Debug, Clone, PartialEq)]
pub struct Path {
    pub root: Root,
    /// `$name...`: the path reads the variable `name` (then `root` is `Data`).
    pub variable: Option<Variable>,
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
        let mut variable = None;
        let (root, rest) = if let Some(r) = text.strip_prefix("$$") {
            (Root::Context, r)
        } else if let Some(r) = text.strip_prefix('$') {
            // `$name`: a workflow variable.
            let name_len = r
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(r.len());
            if name_len > 0 {
                if r.starts_with(|c: char| c.is_ascii_digit()) {
                    return Err(format!(
                        "{text:?}: a variable name cannot start with a digit"
                    ));
                }
                variable = Some(Variable(r[..name_len].to_string()));
            }
            (Root::Data, &r[name_len..])
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
            variable,
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

    /// `$` alone: the whole state data.
    pub fn is_root(&self) -> bool {
        self.steps.is_empty() && self.variable.is_none() && self.root == Root::Data
    }

    /// The document this path reads: the data, the context object, or a variable.
    pub fn doc<'a>(
        &self,
        data: &'a Value,
        ctx: &'a Value,
        vars: &'a crate::vars::Vars<'_>,
    ) -> Option<&'a Value> {
        match (&self.variable, self.root) {
            (Some(Variable(name)), _) => vars.get(name),
            (None, Root::Context) => Some(ctx),
            (None, Root::Data) => Some(data),
        }
    }

    /// Selects from whichever document the path reads. `None`: a definite path matched
    /// nothing, or the variable is not set.
    pub fn resolve(
        &self,
        data: &Value,
        ctx: &Value,
        vars: &crate::vars::Vars<'_>,
    ) -> Option<Value> {
        self.select(self.doc(data, ctx, vars)?)
    }

    /// Whether the path can select several nodes (then its value is an array of them).
    fn is_multi(&self) -> bool {
        self.steps.iter().any(|s| {
            matches!(
                s,
                Step::Wildcard
                    | Step::Slice(..)
                    | Step::Union(_)
                    | Step::DeepField(_)
                    | Step::Filter(_)
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

    /// ResultPath: puts `value` at this reference path inside `doc`, creating missing
    /// objects. Fails when a step meets a non-object (or a missing array element).
    pub fn insert(&self, doc: Value, value: Value) -> Result<Value, String> {
        if self.variable.is_some() || self.root == Root::Context {
            return Err(format!(
                "ResultPath {} must point into the state's data ($...)",
                self.text
            ));
        }
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
    if let Some(name) = quoted(inner) {
        return Ok(Step::Field(name));
    }
    if let Some(f) = inner.strip_prefix('?') {
        let f = f.trim();
        let body = f
            .strip_prefix('(')
            .and_then(|f| f.strip_suffix(')'))
            .ok_or("a filter is written [?(...)]")?;
        let mut p = FilterParser {
            s: body.as_bytes(),
            text: body,
            i: 0,
            depth: 0,
        };
        let filter = p.or()?;
        p.ws();
        if p.i != p.s.len() {
            return Err(format!(
                "unexpected text in the filter at {:?}",
                &body[p.i..]
            ));
        }
        return Ok(Step::Filter(Box::new(filter)));
    }
    if inner.starts_with('(') {
        return Err("script expressions are not supported".into());
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

/// A bracket key in quotes: `'name'` or `"name"`. Only the enclosing quote may be escaped
/// (`\'` in single quotes); any other backslash is part of the name, as Jayway reads it.
fn quoted(inner: &str) -> Option<String> {
    let q = inner.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    if inner.len() < 2 || !inner.ends_with(q) {
        return None;
    }
    let body = &inner[1..inner.len() - 1];
    let mut out = String::with_capacity(body.len());
    let mut it = body.chars().peekable();
    while let Some(c) = it.next() {
        if c == '\\' && it.peek() == Some(&q) {
            out.push(q);
            it.next();
        } else if c == q {
            // An unescaped quote inside: not one quoted name (e.g. a union of names).
            return None;
        } else {
            out.push(c);
        }
    }
    Some(out)
}

struct FilterParser<'a> {
    s: &'a [u8],
    text: &'a str,
    i: usize,
    depth: usize,
}

impl FilterParser<'_> {
    fn ws(&mut self) {
        while self.s.get(self.i).is_some_and(u8::is_ascii_whitespace) {
            self.i += 1;
        }
    }

    fn eat(&mut self, tok: &str) -> bool {
        self.ws();
        if self.text[self.i..].starts_with(tok) {
            self.i += tok.len();
            true
        } else {
            false
        }
    }

    fn or(&mut self) -> Result<Filter, String> {
        self.depth += 1;
        if self.depth > 32 {
            return Err("filter nested too deep".into());
        }
        let mut items = vec![self.and()?];
        while self.eat("||") {
            items.push(self.and()?);
        }
        self.depth -= 1;
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Filter::Or(items)
        })
    }

    fn and(&mut self) -> Result<Filter, String> {
        let mut items = vec![self.unary()?];
        while self.eat("&&") {
            items.push(self.unary()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Filter::And(items)
        })
    }

    fn unary(&mut self) -> Result<Filter, String> {
        if self.eat("!") {
            return Ok(Filter::Not(Box::new(self.unary()?)));
        }
        if self.eat("(") {
            let f = self.or()?;
            if !self.eat(")") {
                return Err("')' expected in the filter".into());
            }
            return Ok(f);
        }
        let left = self.operand()?;
        let op = [
            ("==", CmpOp::Eq),
            ("!=", CmpOp::Ne),
            ("<=", CmpOp::Le),
            (">=", CmpOp::Ge),
            ("<", CmpOp::Lt),
            (">", CmpOp::Gt),
        ]
        .into_iter()
        .find(|(t, _)| self.eat(t));
        match (op, left) {
            (Some((_, op)), left) => Ok(Filter::Compare(left, op, self.operand()?)),
            (None, Operand::Current(steps)) => Ok(Filter::Exists(steps)),
            (None, Operand::Literal(v)) => Err(format!("a filter cannot test the literal {v}")),
        }
    }

    fn operand(&mut self) -> Result<Operand, String> {
        self.ws();
        let rest = &self.text[self.i..];
        if let Some(after) = rest.strip_prefix('@') {
            // Names and indices after `@`, up to an operator, a space or a parenthesis.
            let len = after
                .find(|c: char| c.is_whitespace() || "=!<>&|()".contains(c))
                .unwrap_or(after.len());
            let p = Path::parse(&format!("${}", &after[..len]))?;
            if !p.is_reference() {
                return Err(format!(
                    "@{}: only names and indices after '@'",
                    &after[..len]
                ));
            }
            self.i += 1 + len;
            return Ok(Operand::Current(p.steps));
        }
        if let Some(q) = rest.chars().next().filter(|c| *c == '\'' || *c == '"') {
            let end = rest[1..]
                .find(q)
                .ok_or("unterminated string in the filter")?;
            self.i += end + 2;
            return Ok(Operand::Literal(Value::String(rest[1..=end].to_string())));
        }
        let len = rest
            .find(|c: char| c.is_whitespace() || "=!<>&|()".contains(c))
            .unwrap_or(rest.len());
        let tok = &rest[..len];
        let v: Value = serde_json::from_str(tok)
            .ok()
            .filter(|v: &Value| !v.is_object() && !v.is_array())
            .ok_or_else(|| format!("bad value {tok:?} in the filter"))?;
        self.i += len;
        Ok(Operand::Literal(v))
    }
}

fn matches(f: &Filter, node: &Value) -> bool {
    let resolve = |o: &Operand| -> Option<Value> {
        match o {
            Operand::Literal(v) => Some(v.clone()),
            Operand::Current(steps) => select_steps(steps, node).cloned(),
        }
    };
    match f {
        Filter::Or(fs) => fs.iter().any(|f| matches(f, node)),
        Filter::And(fs) => fs.iter().all(|f| matches(f, node)),
        Filter::Not(f) => !matches(f, node),
        Filter::Exists(steps) => select_steps(steps, node).is_some(),
        Filter::Compare(a, op, b) => {
            let (Some(a), Some(b)) = (resolve(a), resolve(b)) else {
                return *op == CmpOp::Ne;
            };
            let ord = match (&a, &b) {
                (Value::Number(x), Value::Number(y)) => x.as_f64().partial_cmp(&y.as_f64()),
                (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
                _ if a == b => Some(std::cmp::Ordering::Equal),
                _ => None,
            };
            use std::cmp::Ordering::*;
            match op {
                CmpOp::Eq => ord == Some(Equal),
                CmpOp::Ne => ord != Some(Equal),
                CmpOp::Lt => ord == Some(Less),
                CmpOp::Le => matches!(ord, Some(Less | Equal)),
                CmpOp::Gt => ord == Some(Greater),
                CmpOp::Ge => matches!(ord, Some(Greater | Equal)),
            }
        }
    }
}

/// Follows names and indices (a reference path's steps) from `node`.
fn select_steps<'a>(steps: &[Step], node: &'a Value) -> Option<&'a Value> {
    let mut cur = node;
    for s in steps {
        cur = match (s, cur) {
            (Step::Field(f), Value::Object(m)) => m.get(f)?,
            (Step::Index(n), Value::Array(a)) => a.get(usize::try_from(*n).ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
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
        (Step::Filter(f), Value::Array(a)) => out.extend(a.iter().filter(|x| matches(f, x))),
        (Step::Filter(f), Value::Object(m)) => out.extend(m.values().filter(|x| matches(f, x))),
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
    fn filters_select_matching_children() {
        let doc = json!({"users": [
            {"name": "a", "status": 0, "age": 30},
            {"name": "b", "status": 1, "age": 40},
            {"name": "c", "status": 0}]});
        let sel = |p: &str| Path::parse(p).unwrap().select(&doc).unwrap();
        assert_eq!(sel("$.users[?(@.status == 0)].name"), json!(["a", "c"]));
        assert_eq!(sel("$.users[?(@.age)].name"), json!(["a", "b"]));
        assert_eq!(
            sel("$.users[?(@.age > 35 || @.name == 'c')].name"),
            json!(["b", "c"])
        );
        assert_eq!(
            sel("$.users[?(@.status != 0 && !(@.age < 35))].name"),
            json!(["b"])
        );
        assert_eq!(sel("$.users[?(@.name == \"a\")].age"), json!([30]));
    }

    #[test]
    fn quoted_keys_unescape_only_their_own_quote() {
        let doc = json!({"it's": 1, "a\\\"b": 2});
        let sel = |p: &str| Path::parse(p).unwrap().select(&doc);
        assert_eq!(sel("$['it\\'s']"), Some(json!(1)));
        assert_eq!(sel("$['a\\\"b']"), Some(json!(2)));
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
        for bad in [
            "",
            "a.b",
            "$.",
            "$[",
            "$.a[?(@.x ==)]",
            "$.a[(@.length-1)]",
            "$..",
            "$ .a",
        ] {
            assert!(Path::parse(bad).is_err(), "{bad}");
        }
    }
}
