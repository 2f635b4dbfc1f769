//! The schema-subset validator (`longhaul_jobs::schema`) against the `jsonschema` crate on the
//! built-in job types' input schemas: both must accept and refuse the same inputs. Inputs are
//! generated from the schema itself, with values on both sides of every bound, so about as
//! many pass as fail.

use longhaul_jobs::schema;
use longhaul_jobs::types::JobTypes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value, json};

const WORDS: &[&str] = &[
    "",
    "a",
    "count",
    "sum",
    "mean",
    "min",
    "max",
    "eq",
    "contains",
    "region",
    "https://x/y.csv",
    "é",
    "bogus",
];

fn number_near(rng: &mut StdRng, s: &Map<String, Value>, integer: bool, noisy: bool) -> Value {
    let bounds: Vec<f64> = ["minimum", "maximum"]
        .iter()
        .filter_map(|k| s.get(*k).and_then(Value::as_f64))
        .collect();
    let base = if bounds.is_empty() {
        rng.random_range(-3.0..3.0f64).round()
    } else {
        bounds[rng.random_range(0..bounds.len())]
    };
    let mut x = base + [-1.0, 0.0, 0.0, 1.0][rng.random_range(0..4)];
    if !noisy {
        x = base;
    }
    match rng.random_range(0..8) {
        0 if !noisy => json!(x),
        0 => json!(x + 0.5),
        1 => json!(x), // a float with no fraction: an integer to JSON Schema
        _ if integer || x.fract() == 0.0 => json!(x as i64),
        _ => json!(x),
    }
}

fn string_near(rng: &mut StdRng, s: &Map<String, Value>, noisy: bool) -> Value {
    let bound = ["minLength", "maxLength"]
        .iter()
        .filter_map(|k| s.get(*k).and_then(Value::as_u64))
        .map(|n| n.min(64))
        .collect::<Vec<_>>();
    if !bound.is_empty() && (!noisy || rng.random_bool(0.5)) {
        let off = if noisy { rng.random_range(-1..=1) } else { 0 };
        let n = bound[rng.random_range(0..bound.len())] as i64 + off;
        return json!("é".repeat(n.max(0) as usize));
    }
    json!(WORDS[rng.random_range(0..WORDS.len())])
}

fn random_scalar(rng: &mut StdRng) -> Value {
    match rng.random_range(0..6) {
        0 => Value::Null,
        1 => json!(rng.random_bool(0.5)),
        2 => json!(rng.random_range(-2..12)),
        3 => json!(1.5),
        4 => json!(WORDS[rng.random_range(0..WORDS.len())]),
        _ => json!([]),
    }
}

/// An instance shaped by `schema`; when `noisy`, with a chance of breaking each rule.
fn generate(rng: &mut StdRng, schema: &Value, depth: u32, noisy: bool) -> Value {
    let Value::Object(s) = schema else {
        return random_scalar(rng);
    };
    if depth > 6 || (noisy && rng.random_bool(0.04)) {
        return random_scalar(rng);
    }
    if let Some(Value::Array(options)) = s.get("enum") {
        return if !noisy || rng.random_bool(0.85) {
            options[rng.random_range(0..options.len())].clone()
        } else {
            json!("nope")
        };
    }
    if let Some(Value::Array(options)) = s.get("oneOf") {
        let first = rng.random_range(0..options.len());
        let v = generate(rng, &options[first], depth + 1, noisy);
        // Sometimes merge two branches' shapes, which oneOf must refuse.
        let second = rng.random_range(0..options.len());
        if noisy
            && rng.random_bool(0.1)
            && let (Value::Object(mut a), Value::Object(b)) =
                (v.clone(), generate(rng, &options[second], depth + 1, noisy))
        {
            a.extend(b);
            return Value::Object(a);
        }
        return v;
    }
    let ty = match s.get("type") {
        Some(Value::String(t)) => t.clone(),
        Some(Value::Array(ts)) => ts[rng.random_range(0..ts.len())]
            .as_str()
            .unwrap_or("null")
            .to_string(),
        _ => "any".to_string(),
    };
    match ty.as_str() {
        "object" => {
            let mut m = Map::new();
            if let Some(Value::Object(props)) = s.get("properties") {
                let required: Vec<&str> = s
                    .get("required")
                    .and_then(Value::as_array)
                    .map(|r| r.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                for (k, sub) in props {
                    let p = match (required.contains(&k.as_str()), noisy) {
                        (true, false) => 1.0,
                        (true, true) => 0.95,
                        _ => 0.5,
                    };
                    if rng.random_bool(p) {
                        m.insert(k.clone(), generate(rng, sub, depth + 1, noisy));
                    }
                }
            }
            if noisy && rng.random_bool(0.05) {
                m.insert("bogus".into(), json!(1));
            }
            Value::Object(m)
        }
        "array" => {
            let min = s.get("minItems").and_then(Value::as_u64).unwrap_or(0);
            let max = s
                .get("maxItems")
                .and_then(Value::as_u64)
                .unwrap_or(3)
                .min(4);
            let n = if noisy {
                rng.random_range(0..=max + 1)
            } else {
                rng.random_range(min..=max.max(min))
            };
            let items = s.get("items").cloned().unwrap_or(Value::Null);
            Value::Array(
                (0..n)
                    .map(|_| generate(rng, &items, depth + 1, noisy))
                    .collect(),
            )
        }
        "integer" => number_near(rng, s, true, noisy),
        "number" => number_near(rng, s, false, noisy),
        "string" => string_near(rng, s, noisy),
        "boolean" => json!(rng.random_bool(0.5)),
        _ => random_scalar(rng),
    }
}

#[test]
fn subset_validator_agrees_with_jsonschema_on_the_builtin_schemas() {
    let types = builtin_types();
    let mut rng = StdRng::seed_from_u64(0x10e9_4a01);
    for name in types.names() {
        let schema = &types.get(name).unwrap().input_schema;
        let oracle = jsonschema::validator_for(schema).unwrap();
        let (mut valid, mut invalid) = (0, 0);
        for _ in 0..20_000 {
            let noisy = rng.random_bool(0.5);
            let v = generate(&mut rng, schema, 0, noisy);
            let ours = schema::validate(schema, &v);
            assert_eq!(
                ours.is_ok(),
                oracle.is_valid(&v),
                "{name}: disagree on {v}: ours {ours:?}"
            );
            if ours.is_ok() {
                valid += 1
            } else {
                invalid += 1
            }
        }
        eprintln!("{name}: {valid} valid, {invalid} invalid");
        // Both sides of the rules were exercised, or the comparison proves little.
        assert!(
            valid > 1_000 && invalid > 1_000,
            "{name}: {valid} valid, {invalid} invalid"
        );
    }
}

/// The built-in job types from their folders (`jobtypes/*/jobtype.json`), without their
/// Rust input checks (those live in longhaul-steps).
fn builtin_types() -> JobTypes {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../jobtypes");
    let types = ["demo", "csv-report"]
        .iter()
        .map(|name| {
            let text = std::fs::read_to_string(root.join(name).join("jobtype.json")).unwrap();
            let mut def = longhaul_jobs::JobTypeDef::parse(&text).unwrap();
            def.input_check = None;
            longhaul_jobs::JobType::from_def(name, &def, None).unwrap()
        })
        .collect();
    JobTypes::new(types).unwrap()
}
