//! Parallel and Map states: their branches and iterations, run concurrently in the
//! execution's task; Map's items, selector, batches, concurrency and tolerated failures.

use futures::StreamExt;
use serde_json::{Map, Value, json};

use super::{At, Failure, Run, from_apply, query_error, runtime, type_name};
use crate::history::{Field, details};
use crate::jsonata::QueryError;
use crate::model::{Batcher, Branch, Kind, Lang, MapSpec, Payload, State};
use crate::vars::Vars;

/// How a Map runs its iterations: at most `concurrency` at once; failures up to the
/// tolerated count or percentage (either one given) end as `{Error, Cause}` results.
struct Limits {
    concurrency: usize,
    tolerated_count: Option<f64>,
    tolerated_percent: Option<f64>,
}

impl Limits {
    fn tolerant(&self) -> bool {
        self.tolerated_count.is_some() || self.tolerated_percent.is_some()
    }

    /// Exceeded when every configured tolerance is exceeded.
    fn exceeded(&self, failed: usize, total: usize) -> bool {
        let over_count = self.tolerated_count.is_none_or(|c| failed as f64 > c);
        let over_pct = self
            .tolerated_percent
            .is_none_or(|p| (failed as f64) * 100.0 / (total.max(1) as f64) > p);
        failed > 0 && over_count && over_pct
    }
}

impl Run {
    /// Emits `{kind}` (a `…Failed` event) with the failure's error and cause.
    pub(super) fn failed_event(&self, kind: &str, state: &str, f: &Failure) {
        self.event(
            kind,
            Some(state),
            details(&[
                ("error", Field::Str(&f.error)),
                ("cause", Field::Str(&f.cause)),
            ]),
        );
    }

    pub(super) async fn run_parallel(
        &self,
        state: &State,
        branches: &[Branch],
        effective: &Value,
        ctx: &(dyn Fn() -> Value + Sync),
        vars: &Vars<'_>,
    ) -> Result<Value, Failure> {
        let input = self.state_input(state, effective, ctx, vars)?;
        self.event("ParallelStateStarted", Some(&state.name), details(&[]));
        let runs = branches.iter().map(|b| {
            self.run_branch(
                b,
                b.start_at.clone(),
                input.clone(),
                false,
                None,
                None,
                Vars::new(Map::new(), Some(vars)),
            )
        });
        // try_join_all: the first failure drops (cancels) the other branches.
        match futures::future::try_join_all(runs).await {
            Ok(outs) => {
                self.event("ParallelStateSucceeded", Some(&state.name), details(&[]));
                Ok(Value::Array(outs))
            }
            Err(f) => {
                self.failed_event("ParallelStateFailed", &state.name, &f);
                Err(f)
            }
        }
    }

    /// The items a Map state iterates: ItemsPath (JSONPath), Items (JSONata), else its
    /// input; an array.
    fn map_items(
        &self,
        state: &State,
        spec: &MapSpec,
        raw: &Value,
        effective: &Value,
        ctx: &(dyn Fn() -> Value + Sync),
        vars: &Vars<'_>,
    ) -> Result<Vec<Value>, Failure> {
        let items = match (state.lang, &spec.items_path, &spec.items) {
            (Lang::JsonPath, None, _) => Value::Object(Map::new()),
            (Lang::JsonPath, Some(p), _) => self
                .pick(p, effective, ctx, vars)
                .ok_or_else(|| runtime(format!("ItemsPath {p} matched nothing")))?,
            (Lang::Jsonata, _, Some(t)) => {
                let v = t
                    .eval(&self.env(raw, None, None, ctx, vars), "Items")
                    .map_err(|QueryError(m)| query_error(m))?;
                if !v.is_array() {
                    let expr = t.as_expr().map_or("", |e| e.text.as_str());
                    return Err(query_error(format!(
                        "The JSONata expression '{expr}' specified for the field 'Items' returned an unexpected result type. Expected 'array', but was '{}' for value: {v}",
                        type_name(&v)
                    )));
                }
                v
            }
            (Lang::Jsonata, _, None) => match raw {
                Value::Array(_) => raw.clone(),
                other => {
                    return Err(query_error(format!(
                        "Map state input must be an array but was: {other}"
                    )));
                }
            },
        };
        match items {
            Value::Array(items) => Ok(items),
            _ => Err(runtime(format!(
                "the ItemsPath of Map state '{}' must select an array",
                state.name
            ))),
        }
    }

    /// MaxConcurrency and the tolerated failures, evaluated.
    fn map_limits(
        &self,
        spec: &MapSpec,
        effective: &Value,
        ctx: &(dyn Fn() -> Value + Sync),
        vars: &Vars<'_>,
    ) -> Result<Limits, Failure> {
        let concurrency = match self.count(
            &spec.max_concurrency,
            "MaxConcurrency",
            effective,
            ctx,
            vars,
        )? {
            None | Some(0) => usize::MAX,
            Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
        };
        let tolerated_count = match &spec.tolerated_count {
            Some(n) => Some(self.num(n, "ToleratedFailureCount", effective, ctx, vars)?),
            None => None,
        };
        let tolerated_percent = match &spec.tolerated_percent {
            Some(n) => Some(self.num(n, "ToleratedFailurePercentage", effective, ctx, vars)?),
            None => None,
        };
        Ok(Limits {
            concurrency,
            tolerated_count,
            tolerated_percent,
        })
    }

    /// Each iteration's input: the item through ItemSelector (or as it is), then grouped
    /// by ItemBatcher.
    fn iteration_inputs(
        &self,
        spec: &MapSpec,
        items: &[Value],
        raw: &Value,
        effective: &Value,
        ctx: &(dyn Fn() -> Value + Sync),
        vars: &Vars<'_>,
    ) -> Result<Vec<Value>, Failure> {
        let mut inputs = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            inputs.push(match &spec.item_selector {
                Some(selector) => {
                    // The context holds the execution's input: build it only when an
                    // ItemSelector can read it (a copy per item is quadratic in big Maps).
                    let item_ctx = || {
                        let mut c = ctx();
                        if let Value::Object(m) = &mut c {
                            m.insert("Map".into(), json!({"Item": {"Index": i, "Value": item}}));
                        }
                        c
                    };
                    self.payload(selector, "ItemSelector", effective, raw, &item_ctx, vars)?
                }
                None => item.clone(),
            });
        }
        match &spec.batcher {
            Some(b) => self.batch(b, inputs, raw, effective, ctx, vars),
            None => Ok(inputs),
        }
    }

    /// A payload template of either language: JSONPath reads `effective`, JSONata `raw`.
    fn payload(
        &self,
        p: &Payload,
        field: &str,
        effective: &Value,
        raw: &Value,
        ctx: &(dyn Fn() -> Value + Sync),
        vars: &Vars<'_>,
    ) -> Result<Value, Failure> {
        match p {
            Payload::Path(t) => t
                .apply(effective, &ctx(), vars)
                .map_err(|e| from_apply(e, field)),
            Payload::Jsonata(t) => t
                .eval(&self.env(raw, None, None, ctx, vars), field)
                .map_err(|QueryError(m)| query_error(m)),
        }
    }

    fn batch(
        &self,
        b: &Batcher,
        inputs: Vec<Value>,
        raw: &Value,
        effective: &Value,
        ctx: &(dyn Fn() -> Value + Sync),
        vars: &Vars<'_>,
    ) -> Result<Vec<Value>, Failure> {
        let batch_input = match &b.batch_input {
            Some(p) => {
                Some(self.payload(p, "ItemBatcher.BatchInput", effective, raw, ctx, vars)?)
            }
            None => None,
        };
        Ok(batches(inputs, b.max_items, b.max_bytes, batch_input))
    }

    pub(super) async fn run_map(
        &self,
        at: &At<'_>,
        raw: &Value,
        effective: &Value,
        ctx: &(dyn Fn() -> Value + Sync),
        vars: &Vars<'_>,
    ) -> Result<Value, Failure> {
        let state = at.state;
        let Kind::Map(spec) = &state.kind else {
            return Err(runtime("not a map"));
        };
        let items = self.map_items(state, spec, raw, effective, ctx, vars)?;
        let limits = self.map_limits(spec, effective, ctx, vars)?;
        let inputs = self.iteration_inputs(spec, &items, raw, effective, ctx, vars)?;
        let total = inputs.len();
        self.event(
            "MapStateStarted",
            Some(&state.name),
            details(&[("length", Field::Num(total as u64))]),
        );
        let result = self
            .run_iterations(state, &spec.processor, &items, inputs, &limits, vars)
            .await;
        match &result {
            Ok(_) => {
                self.event(
                    "MapStateSucceeded",
                    Some(&state.name),
                    details(&[("length", Field::Num(total as u64))]),
                );
            }
            Err(f) => self.failed_event("MapStateFailed", &state.name, f),
        }
        result
    }

    /// Runs the iterations, at most `limits.concurrency` at once; their results in item
    /// order.
    async fn run_iterations(
        &self,
        state: &State,
        processor: &Branch,
        items: &[Value],
        inputs: Vec<Value>,
        limits: &Limits,
        vars: &Vars<'_>,
    ) -> Result<Value, Failure> {
        let total = inputs.len();
        let iteration_event = |kind: &str, i: usize| {
            self.event(
                kind,
                Some(&state.name),
                details(&[
                    ("index", Field::Num(i as u64)),
                    ("name", Field::Str(&state.name)),
                ]),
            );
        };
        let mut stream = futures::stream::iter(inputs.into_iter().enumerate().map(|(i, input)| {
            let item_value = items.get(i).cloned().unwrap_or(Value::Null);
            async move {
                iteration_event("MapIterationStarted", i);
                let r = self
                    .run_branch(
                        processor,
                        processor.start_at.clone(),
                        input,
                        false,
                        Some((i, item_value)),
                        None,
                        Vars::new(Map::new(), Some(vars)),
                    )
                    .await;
                let kind = match r {
                    Ok(_) => "MapIterationSucceeded",
                    Err(_) => "MapIterationFailed",
                };
                iteration_event(kind, i);
                (i, r)
            }
        }))
        .buffer_unordered(limits.concurrency.min(total.max(1)));
        let mut results: Vec<Value> = vec![Value::Null; total];
        let mut failed = 0usize;
        while let Some((i, r)) = stream.next().await {
            match r {
                Ok(v) => results[i] = v,
                Err(f) if !limits.tolerant() => return Err(f),
                Err(f) => {
                    failed += 1;
                    results[i] = json!({"Error": f.error, "Cause": f.cause});
                }
            }
        }
        if limits.exceeded(failed, total) {
            return Err(Failure::new(
                "States.ExceedToleratedFailureThreshold",
                format!("{failed} of {total} iterations failed, more than the tolerated failures"),
            ));
        }
        Ok(Value::Array(results))
    }
}

/// Groups a Map's item inputs into batches (`{"BatchInput"?, "Items": [...]}`).
fn batches(
    inputs: Vec<Value>,
    max_items: Option<u64>,
    max_bytes: Option<u64>,
    batch_input: Option<Value>,
) -> Vec<Value> {
    let mut batches = Vec::new();
    let mut cur: Vec<Value> = Vec::new();
    let mut cur_bytes = 0u64;
    for v in inputs {
        let size = v.to_string().len() as u64;
        let full_items = max_items.is_some_and(|m| cur.len() as u64 >= m);
        let full_bytes = max_bytes.is_some_and(|m| !cur.is_empty() && cur_bytes + size > m);
        if full_items || full_bytes {
            batches.push(std::mem::take(&mut cur));
            cur_bytes = 0;
        }
        cur_bytes += size;
        cur.push(v);
    }
    if !cur.is_empty() {
        batches.push(cur);
    }
    batches
        .into_iter()
        .map(|items| {
            let mut m = Map::new();
            if let Some(bi) = &batch_input {
                m.insert("BatchInput".into(), bi.clone());
            }
            m.insert("Items".into(), Value::Array(items));
            Value::Object(m)
        })
        .collect()
}
