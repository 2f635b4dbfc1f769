//! Intrinsic functions (`States.Format(...)` and friends), parsed once at load time and
//! evaluated against the state's data and the context object.

use base64::Engine as _;
use serde_json::{Value, json};
use sha2::Digest;

use crate::path::Path;
use crate::vars::Vars;

/// Largest array an intrinsic may build (AWS limits ArrayRange to 1,000 items).
const MAX_ARRAY: usize = 1000;
/// Largest input of Base64Encode/Decode and Hash (AWS: 10,000 characters).
const MAX_STRING: usize = 10_000;

#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    Literal(Value),
    Path(Path),
    Call(Box<Call>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub func: Func,
    pub args: Vec<Arg>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    Format,
    StringToJson,
    JsonToString,
    Array,
    ArrayPartition,
    ArrayContains,
    ArrayRange,
    ArrayGetItem,
    ArrayLength,
    ArrayUnique,
    Base64Encode,
    Base64Decode,
    Hash,
    JsonMerge,
    MathRandom,
    MathAdd,
    StringSplit,
    Uuid,
}

impl Func {
    fn by_name(name: &str) -> Option<Func> {
        Some(match name {
            "States.Format" => Func::Format,
            "States.StringToJson" => Func::StringToJson,
            "States.JsonToString" => Func::JsonToString,
            "States.Array" => Func::Array,
            "States.ArrayPartition" => Func::ArrayPartition,
            "States.ArrayContains" => Func::ArrayContains,
            "States.ArrayRange" => Func::ArrayRange,
            "States.ArrayGetItem" => Func::ArrayGetItem,
            "States.ArrayLength" => Func::ArrayLength,
            "States.ArrayUnique" => Func::ArrayUnique,
            "States.Base64Encode" => Func::Base64Encode,
            "States.Base64Decode" => Func::Base64Decode,
            "States.Hash" => Func::Hash,
            "States.JsonMerge" => Func::JsonMerge,
            "States.MathRandom" => Func::MathRandom,
            "States.MathAdd" => Func::MathAdd,
            "States.StringSplit" => Func::StringSplit,
            "States.UUID" => Func::Uuid,
            _ => return None,
        })
    }

    /// Allowed argument counts.
    fn arity(self) -> (usize, usize) {
        match self {
            Func::Format => (1, usize::MAX),
            Func::Array => (0, usize::MAX),
            Func::StringToJson
            | Func::JsonToString
            | Func::ArrayLength
            | Func::ArrayUnique
            | Func::Base64Encode
            | Func::Base64Decode => (1, 1),
            Func::ArrayPartition
            | Func::ArrayContains
            | Func::ArrayGetItem
            | Func::Hash
            | Func::MathAdd
            | Func::StringSplit => (2, 2),
            Func::ArrayRange | Func::JsonMerge => (3, 3),
            Func::MathRandom => (2, 3),
            Func::Uuid => (0, 0),
        }
    }
}

/// Whether a string looks like an intrinsic call (it is parsed as one if so).
pub fn looks_like_call(s: &str) -> bool {
    s.trim_start().starts_with("States.")
}

pub fn parse(text: &str) -> Result<Call, String> {
    let mut p = Parser {
        s: text.as_bytes(),
        text,
        i: 0,
        depth: 0,
    };
    p.ws();
    let call = p.call()?;
    p.ws();
    if p.i != p.s.len() {
        return Err(format!("{text:?}: unexpected text after the call"));
    }
    Ok(call)
}

struct Parser<'a> {
    s: &'a [u8],
    text: &'a str,
    i: usize,
    depth: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn err(&self, m: &str) -> String {
        format!("{:?}: {m} (at character {})", self.text, self.i + 1)
    }

    fn call(&mut self) -> Result<Call, String> {
        self.depth += 1;
        if self.depth > 32 {
            return Err(self.err("intrinsic calls nested too deep"));
        }
        let start = self.i;
        while self.i < self.s.len()
            && (self.s[self.i].is_ascii_alphanumeric() || self.s[self.i] == b'.')
        {
            self.i += 1;
        }
        let name = &self.text[start..self.i];
        let func = Func::by_name(name)
            .ok_or_else(|| self.err(&format!("unknown intrinsic function {name:?}")))?;
        self.ws();
        if self.s.get(self.i) != Some(&b'(') {
            return Err(self.err("expected '('"));
        }
        self.i += 1;
        let mut args = Vec::new();
        self.ws();
        if self.s.get(self.i) == Some(&b')') {
            self.i += 1;
        } else {
            loop {
                self.ws();
                args.push(self.arg()?);
                self.ws();
                match self.s.get(self.i) {
                    Some(b',') => self.i += 1,
                    Some(b')') => {
                        self.i += 1;
                        break;
                    }
                    _ => return Err(self.err("expected ',' or ')'")),
                }
            }
        }
        let (lo, hi) = func.arity();
        if args.len() < lo || args.len() > hi {
            return Err(format!(
                "{:?}: {name} takes {} argument(s), got {}",
                self.text,
                if lo == hi {
                    lo.to_string()
                } else if hi == usize::MAX {
                    format!("at least {lo}")
                } else {
                    format!("{lo} to {hi}")
                },
                args.len()
            ));
        }
        if func == Func::Format
            && let Some(Arg::Literal(Value::String(t))) = args.first()
        {
            let holes = count_placeholders(t);
            if holes != args.len() - 1 {
                return Err(format!(
                    "{:?}: the template has {holes} '{{}}' but {} argument(s) follow",
                    self.text,
                    args.len() - 1
                ));
            }
        }
        self.depth -= 1;
        Ok(Call { func, args })
    }

    fn arg(&mut self) -> Result<Arg, String> {
        match self.s.get(self.i) {
            Some(b'\'') => {
                self.i += 1;
                let mut out = String::new();
                loop {
                    let Some(&c) = self.s.get(self.i) else {
                        return Err(self.err("unterminated string"));
                    };
                    match c {
                        b'\\' => {
                            let Some(&n) = self.s.get(self.i + 1) else {
                                return Err(self.err("dangling '\\'"));
                            };
                            // Keep \{ and \} escaped for Format; unescape the rest.
                            match n {
                                b'{' | b'}' => {
                                    out.push('\\');
                                    out.push(n as char);
                                }
                                b'\'' | b'\\' => out.push(n as char),
                                _ => {
                                    return Err(
                                        self.err("unknown escape (use \\', \\\\, \\{ or \\})")
                                    );
                                }
                            }
                            self.i += 2;
                        }
                        b'\'' => {
                            self.i += 1;
                            break;
                        }
                        _ => {
                            let ch = self.text[self.i..].chars().next().unwrap_or('\u{fffd}');
                            out.push(ch);
                            self.i += ch.len_utf8();
                        }
                    }
                }
                Ok(Arg::Literal(Value::String(out)))
            }
            Some(b'$') => {
                let start = self.i;
                let mut bracket = 0;
                let mut quote: Option<u8> = None;
                while let Some(&c) = self.s.get(self.i) {
                    match (quote, c) {
                        (Some(q), c) if c == q => quote = None,
                        (Some(_), _) => {}
                        (None, b'\'') | (None, b'"') if bracket > 0 => quote = Some(c),
                        (None, b'[') => bracket += 1,
                        (None, b']') => bracket -= 1,
                        (None, b',') | (None, b')') if bracket == 0 => break,
                        (None, c) if c.is_ascii_whitespace() && bracket == 0 => break,
                        _ => {}
                    }
                    self.i += 1;
                }
                Path::parse(&self.text[start..self.i]).map(Arg::Path)
            }
            Some(b'S') => Ok(Arg::Call(Box::new(self.call()?))),
            Some(_) => {
                let start = self.i;
                while let Some(&c) = self.s.get(self.i) {
                    if c == b',' || c == b')' || c.is_ascii_whitespace() {
                        break;
                    }
                    self.i += 1;
                }
                let tok = &self.text[start..self.i];
                match tok {
                    "true" => Ok(Arg::Literal(json!(true))),
                    "false" => Ok(Arg::Literal(json!(false))),
                    "null" => Ok(Arg::Literal(Value::Null)),
                    _ => serde_json::from_str::<serde_json::Number>(tok)
                        .map(|n| Arg::Literal(Value::Number(n)))
                        .map_err(|_| self.err(&format!("bad argument {tok:?}"))),
                }
            }
            None => Err(self.err("expected an argument")),
        }
    }
}

fn count_placeholders(t: &str) -> usize {
    let b = t.as_bytes();
    let mut n = 0;
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            i += 2;
            continue;
        }
        if b[i] == b'{' && b.get(i + 1) == Some(&b'}') {
            n += 1;
            i += 2;
            continue;
        }
        i += 1;
    }
    n
}

/// How `States.Format` renders an object or array argument: as AWS does (Java's
/// `toString` of maps and lists): `{a=1, b=[x, y]}`, strings unquoted.
fn render_java(v: &Value, out: &mut String) {
    match v {
        Value::String(s) => out.push_str(s),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                render_java(x, out);
            }
            out.push(']');
        }
        Value::Object(m) => {
            out.push('{');
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(k);
                out.push('=');
                render_java(x, out);
            }
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
}

fn fail<T>(call: &Call, m: impl std::fmt::Display) -> Result<T, String> {
    Err(format!("{:?}: {m}", call.func))
}

/// Evaluates a call: its arguments first (paths, nested calls), then the function.
pub fn eval(call: &Call, data: &Value, ctx: &Value, vars: &Vars<'_>) -> Result<Value, String> {
    let mut args = Vec::with_capacity(call.args.len());
    for a in &call.args {
        args.push(match a {
            Arg::Literal(v) => v.clone(),
            Arg::Path(p) => p
                .resolve(data, ctx, vars)
                .ok_or_else(|| format!("{:?}: the path {p} matched nothing", call.func))?,
            Arg::Call(c) => eval(c, data, ctx, vars)?,
        });
    }
    let t = Typed { call };
    match call.func {
        Func::Format => format(call, &t, args),
        Func::StringToJson | Func::JsonToString | Func::JsonMerge => json_fn(call, &t, args),
        Func::Array
        | Func::ArrayPartition
        | Func::ArrayContains
        | Func::ArrayRange
        | Func::ArrayGetItem
        | Func::ArrayLength
        | Func::ArrayUnique => array_fn(call, &t, args),
        Func::Base64Encode | Func::Base64Decode | Func::Hash => encoding_fn(call, &t, args),
        Func::MathRandom | Func::MathAdd => math_fn(call, &t, args),
        Func::StringSplit | Func::Uuid => string_fn(call, &t, args),
    }
}

/// An argument's value as the type a function needs; errors name the function.
struct Typed<'c> {
    call: &'c Call,
}

impl Typed<'_> {
    fn int(&self, v: &Value, what: &str) -> Result<i64, String> {
        match v.as_i64() {
            Some(n) => Ok(n),
            None => match v.as_f64() {
                Some(f) if f.fract() == 0.0 && f.abs() < 9e15 => Ok(f as i64),
                _ => Err(format!(
                    "{:?}: {what} must be an integer, got {v}",
                    self.call.func
                )),
            },
        }
    }

    fn string(&self, v: &Value, what: &str) -> Result<String, String> {
        v.as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("{:?}: {what} must be a string, got {v}", self.call.func))
    }

    fn array(&self, v: &Value, what: &str) -> Result<Vec<Value>, String> {
        v.as_array()
            .cloned()
            .ok_or_else(|| format!("{:?}: {what} must be an array, got {v}", self.call.func))
    }
}

/// States.Format: `{}` replaced by the arguments in order (strings as they are, other
/// values as Java writes them), a backslash escaping the next character.
fn format(call: &Call, t: &Typed<'_>, args: Vec<Value>) -> Result<Value, String> {
    let template = t.string(&args[0], "the template")?;
    let mut out = String::new();
    let b = template.as_bytes();
    let mut next = 1;
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            let ch = template[i + 1..].chars().next().unwrap_or(' ');
            out.push(ch);
            i += 1 + ch.len_utf8();
            continue;
        }
        if b[i] == b'{' && b.get(i + 1) == Some(&b'}') {
            let Some(v) = args.get(next) else {
                return fail(call, "more '{}' than arguments");
            };
            match v {
                Value::String(s) => out.push_str(s),
                other => render_java(other, &mut out),
            }
            next += 1;
            i += 2;
            continue;
        }
        let ch = template[i..].chars().next().unwrap_or(' ');
        out.push(ch);
        i += ch.len_utf8();
    }
    if next != args.len() {
        return fail(call, "more arguments than '{}'");
    }
    Ok(Value::String(out))
}

/// States.StringToJson, States.JsonToString, States.JsonMerge.
fn json_fn(call: &Call, t: &Typed<'_>, args: Vec<Value>) -> Result<Value, String> {
    match call.func {
        Func::StringToJson => {
            let s = t.string(&args[0], "the argument")?;
            // AWS gives null for an empty or blank string.
            if s.trim().is_empty() {
                return Ok(Value::Null);
            }
            serde_json::from_str(&s).or_else(|e| fail(call, format!("not JSON: {e}")))
        }
        Func::JsonToString => Ok(Value::String(args[0].to_string())),
        Func::JsonMerge => {
            let (Value::Object(a), Value::Object(b)) = (&args[0], &args[1]) else {
                return fail(call, "the first two arguments must be objects");
            };
            if args[2] != Value::Bool(false) {
                return fail(
                    call,
                    "only shallow merges are supported: the third argument must be false",
                );
            }
            let mut out = a.clone();
            for (k, v) in b {
                out.insert(k.clone(), v.clone());
            }
            Ok(Value::Object(out))
        }
        // `eval` sends each function to its group.
        _ => fail(call, "not a function of this group"),
    }
}

/// States.Array and the States.Array* functions.
fn array_fn(call: &Call, t: &Typed<'_>, args: Vec<Value>) -> Result<Value, String> {
    match call.func {
        Func::Array => Ok(Value::Array(args)),
        Func::ArrayPartition => {
            let a = t.array(&args[0], "the first argument")?;
            let size = t.int(&args[1], "the chunk size")?;
            if size <= 0 {
                return fail(call, "the chunk size must be positive");
            }
            let size = usize::try_from(size).unwrap_or(usize::MAX);
            Ok(Value::Array(
                a.chunks(size.max(1))
                    .map(|c| Value::Array(c.to_vec()))
                    .collect(),
            ))
        }
        Func::ArrayContains => {
            let a = t.array(&args[0], "the first argument")?;
            Ok(Value::Bool(a.contains(&args[1])))
        }
        Func::ArrayRange => {
            let (start, end, step) = (
                t.int(&args[0], "start")?,
                t.int(&args[1], "end")?,
                t.int(&args[2], "step")?,
            );
            if step == 0 {
                return fail(call, "step must not be 0");
            }
            let count = if (step > 0 && start > end) || (step < 0 && start < end) {
                0
            } else {
                (end.abs_diff(start) / step.unsigned_abs()) + 1
            };
            if count > MAX_ARRAY as u64 {
                return fail(
                    call,
                    format!("the range has {count} items; at most {MAX_ARRAY}"),
                );
            }
            Ok(Value::Array(
                (0..count as i64).map(|k| json!(start + k * step)).collect(),
            ))
        }
        Func::ArrayGetItem => {
            let a = t.array(&args[0], "the first argument")?;
            let i = t.int(&args[1], "the index")?;
            usize::try_from(i)
                .ok()
                .and_then(|i| a.get(i).cloned())
                .ok_or_else(|| {
                    format!(
                        "{:?}: index {i} is out of range (length {})",
                        call.func,
                        a.len()
                    )
                })
        }
        Func::ArrayLength => Ok(json!(t.array(&args[0], "the argument")?.len())),
        Func::ArrayUnique => {
            let a = t.array(&args[0], "the argument")?;
            let mut out: Vec<Value> = Vec::with_capacity(a.len());
            for v in a {
                if !out.contains(&v) {
                    out.push(v);
                }
            }
            Ok(Value::Array(out))
        }
        // `eval` sends each function to its group.
        _ => fail(call, "not a function of this group"),
    }
}

/// States.Base64Encode, States.Base64Decode, States.Hash.
fn encoding_fn(call: &Call, t: &Typed<'_>, args: Vec<Value>) -> Result<Value, String> {
    match call.func {
        Func::Base64Encode => {
            let s = t.string(&args[0], "the argument")?;
            if s.chars().count() > MAX_STRING {
                return fail(call, format!("input over {MAX_STRING} characters"));
            }
            Ok(Value::String(
                base64::engine::general_purpose::STANDARD.encode(s),
            ))
        }
        Func::Base64Decode => {
            let s = t.string(&args[0], "the argument")?;
            if s.len() > MAX_STRING {
                return fail(call, format!("input over {MAX_STRING} characters"));
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(s.as_bytes())
                .or_else(|e| fail(call, format!("not base64: {e}")))?;
            String::from_utf8(bytes)
                .map(Value::String)
                .or_else(|_| fail(call, "decoded bytes are not UTF-8"))
        }
        Func::Hash => {
            let data = match &args[0] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            if data.chars().count() > MAX_STRING {
                return fail(call, format!("input over {MAX_STRING} characters"));
            }
            let alg = t.string(&args[1], "the algorithm")?;
            let hex = match alg.as_str() {
                "MD5" => hex::encode(md5::Md5::digest(data.as_bytes())),
                "SHA-1" => hex::encode(sha1::Sha1::digest(data.as_bytes())),
                "SHA-256" => hex::encode(sha2::Sha256::digest(data.as_bytes())),
                "SHA-384" => hex::encode(sha2::Sha384::digest(data.as_bytes())),
                "SHA-512" => hex::encode(sha2::Sha512::digest(data.as_bytes())),
                other => {
                    return fail(
                        call,
                        format!(
                            "unknown algorithm {other:?} (MD5, SHA-1, SHA-256, SHA-384, SHA-512)"
                        ),
                    );
                }
            };
            Ok(Value::String(hex))
        }
        // `eval` sends each function to its group.
        _ => fail(call, "not a function of this group"),
    }
}

/// States.MathRandom, States.MathAdd.
fn math_fn(call: &Call, t: &Typed<'_>, args: Vec<Value>) -> Result<Value, String> {
    match call.func {
        Func::MathRandom => {
            let (start, end) = (t.int(&args[0], "start")?, t.int(&args[1], "end")?);
            if start >= end {
                return fail(call, "start must be less than end");
            }
            use rand::{Rng, SeedableRng};
            let n = match args.get(2) {
                Some(seed) => {
                    let seed = t.int(seed, "the seed")?;
                    rand::rngs::StdRng::seed_from_u64(seed as u64).random_range(start..end)
                }
                None => rand::rng().random_range(start..end),
            };
            Ok(json!(n))
        }
        Func::MathAdd => {
            // AWS accepts decimals and rounds each argument half up (1.5 -> 2, -1.5 -> -1)
            // before adding.
            let round = |v: &Value, what: &str| -> Result<i64, String> {
                match v.as_i64() {
                    Some(n) => Ok(n),
                    None => match v.as_f64() {
                        Some(f) if f.is_finite() && f.abs() < 9e15 => Ok((f + 0.5).floor() as i64),
                        _ => Err(format!("{:?}: {what} must be a number, got {v}", call.func)),
                    },
                }
            };
            let (a, b) = (
                round(&args[0], "the first number")?,
                round(&args[1], "the second number")?,
            );
            a.checked_add(b)
                .map(|n| json!(n))
                .ok_or_else(|| format!("{:?}: overflow", call.func))
        }
        // `eval` sends each function to its group.
        _ => fail(call, "not a function of this group"),
    }
}

/// States.StringSplit, States.UUID.
fn string_fn(call: &Call, t: &Typed<'_>, args: Vec<Value>) -> Result<Value, String> {
    match call.func {
        Func::StringSplit => {
            let s = t.string(&args[0], "the string")?;
            let d = t.string(&args[1], "the delimiter")?;
            if d.is_empty() {
                return fail(call, "the delimiter must not be empty");
            }
            Ok(Value::Array(
                s.split(|c| d.contains(c))
                    .filter(|t| !t.is_empty())
                    .map(|t| Value::String(t.to_string()))
                    .collect(),
            ))
        }
        Func::Uuid => Ok(Value::String(uuid::Uuid::new_v4().to_string())),
        // `eval` sends each function to its group.
        _ => fail(call, "not a function of this group"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(expr: &str, data: Value) -> Result<Value, String> {
        eval(&parse(expr)?, &data, &json!({}), &Vars::default())
    }

    #[test]
    fn documented_examples() {
        assert_eq!(
            run(
                "States.Format('Hello, my name is {}.', $.name)",
                json!({"name": "Arnav"})
            )
            .unwrap(),
            json!("Hello, my name is Arnav.")
        );
        assert_eq!(
            run(
                "States.ArrayPartition($.a, 4)",
                json!({"a": [1,2,3,4,5,6,7,8,9]})
            )
            .unwrap(),
            json!([[1, 2, 3, 4], [5, 6, 7, 8], [9]])
        );
        assert_eq!(
            run("States.ArrayRange(1, 9, 2)", json!({})).unwrap(),
            json!([1, 3, 5, 7, 9])
        );
        assert_eq!(
            run(
                "States.StringSplit('This.is+a,test=string', '.+,=')",
                json!({})
            )
            .unwrap(),
            json!(["This", "is", "a", "test", "string"])
        );
        assert_eq!(
            run("States.Base64Encode('Data to encode')", json!({})).unwrap(),
            json!("RGF0YSB0byBlbmNvZGU=")
        );
        assert_eq!(
            run("States.Hash('input data', 'SHA-1')", json!({})).unwrap(),
            json!("aaff4a450a104cd177d28d18d74485e8cae074b7")
        );
        assert_eq!(
            run("States.MathAdd(111, -1)", json!({})).unwrap(),
            json!(110)
        );
        assert_eq!(
            run(
                "States.Format('{} \\{x\\}', States.ArrayLength(States.Array(1, 2)))",
                json!({})
            )
            .unwrap(),
            json!("2 {x}")
        );
    }

    #[test]
    fn bad_calls_are_errors() {
        assert!(parse("States.Nope(1)").is_err());
        assert!(parse("States.Format('{} {}', 1)").is_err());
        assert!(parse("States.ArrayLength(1, 2)").is_err());
        assert!(run("States.ArrayRange(0, 1000000000, 1)", json!({})).is_err());
        assert!(run("States.ArrayGetItem(States.Array(1), 5)", json!({})).is_err());
    }
}
