//! One workflow from the base and every job type: each type's states are copied in with
//! their names prefixed `TYPE.` (names are unique in a whole state machine, Map and Parallel
//! bodies included), its `${Step}` resources bound to the step's substitution, its ends
//! led to Complete, its errors to MarkFailed, and Route given a branch to its first state.

use serde_json::{Map, Value, json};

use crate::{JobTypeFolder, StepBinding};

/// Lambda's own transient errors: every step Task retries them (AWS's advice for Lambda
/// integrations), ahead of the type's own retriers.
pub const LAMBDA_SERVICE_ERRORS: [&str; 4] = [
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
];

/// State names are at most 80 characters (Step Functions' limit).
pub const MAX_STATE_NAME: usize = 80;

/// The base workflow with every type's states in it.
pub fn compose(
    base: &Value,
    types: &[(&JobTypeFolder, Vec<StepBinding>)],
) -> Result<Value, String> {
    let mut machine = base.clone();
    let mut choices = Vec::new();
    for (folder, bindings) in types {
        let states = type_states(folder, bindings)?;
        let start = prefixed(&folder.name, start_at(&folder.workflow)?);
        choices.push(json!({"Variable": "$.type", "StringEquals": folder.name, "Next": start}));
        let all = machine
            .get_mut("States")
            .and_then(Value::as_object_mut)
            .ok_or("the base workflow has no States")?;
        for (name, state) in states {
            if all.insert(name.clone(), state).is_some() {
                return Err(format!("state {name:?} is defined twice"));
            }
        }
    }
    let route = machine
        .pointer_mut("/States/Route/Choices")
        .ok_or("the base workflow has no Route choice")?;
    *route = Value::Array(choices);
    Ok(machine)
}

fn start_at(workflow: &Value) -> Result<&str, String> {
    workflow
        .get("StartAt")
        .and_then(Value::as_str)
        .ok_or_else(|| "StartAt: the workflow needs a StartAt".to_string())
}

fn prefixed(type_name: &str, state: &str) -> String {
    format!("{type_name}.{state}")
}

/// The type's top-level states, ready to sit in the composed machine.
fn type_states(
    folder: &JobTypeFolder,
    bindings: &[StepBinding],
) -> Result<Map<String, Value>, String> {
    let wf = &folder.workflow;
    let query_language = wf.get("QueryLanguage").and_then(Value::as_str);
    let states = wf
        .get("States")
        .and_then(Value::as_object)
        .ok_or("States: the workflow needs States")?;
    let mut out = Map::new();
    for (name, state) in states {
        let mut state = state.clone();
        rewrite_state(&folder.name, &mut state, bindings, query_language)?;
        lead_to_base(&mut state);
        out.insert(checked_name(&folder.name, name)?, state);
    }
    Ok(out)
}

fn checked_name(type_name: &str, state: &str) -> Result<String, String> {
    let name = prefixed(type_name, state);
    if name.chars().count() > MAX_STATE_NAME {
        return Err(format!(
            "state {state:?}: with its type prefix ({name:?}) the name is over {MAX_STATE_NAME} characters"
        ));
    }
    Ok(name)
}

/// Renames transitions, binds step resources and fills step defaults, in this state and in
/// the states of its Map or Parallel bodies.
fn rewrite_state(
    type_name: &str,
    state: &mut Value,
    bindings: &[StepBinding],
    query_language: Option<&str>,
) -> Result<(), String> {
    let Some(obj) = state.as_object_mut() else {
        return Ok(());
    };
    if let Some(ql) = query_language
        && !obj.contains_key("QueryLanguage")
    {
        obj.insert("QueryLanguage".into(), Value::from(ql));
    }
    for key in ["Next", "Default"] {
        rename(type_name, obj.get_mut(key))?;
    }
    for key in ["Choices", "Catch"] {
        if let Some(Value::Array(items)) = obj.get_mut(key) {
            for item in items {
                rename(type_name, item.get_mut("Next"))?;
            }
        }
    }
    let step = bind_resources(state, bindings);
    let Some(obj) = state.as_object_mut() else {
        return Ok(());
    };
    if let Some(step) = step {
        step_defaults(obj, step);
    }
    for body in ["ItemProcessor", "Iterator"] {
        if let Some(b) = obj.get_mut(body) {
            rewrite_body(type_name, b, bindings, query_language)?;
        }
    }
    if let Some(Value::Array(branches)) = obj.get_mut("Branches") {
        for b in branches {
            rewrite_body(type_name, b, bindings, query_language)?;
        }
    }
    Ok(())
}

/// A Map's processor or a Parallel's branch: its own StartAt and States, prefixed too.
fn rewrite_body(
    type_name: &str,
    body: &mut Value,
    bindings: &[StepBinding],
    query_language: Option<&str>,
) -> Result<(), String> {
    let Some(obj) = body.as_object_mut() else {
        return Ok(());
    };
    let query_language = obj
        .get("QueryLanguage")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or(query_language.map(str::to_string));
    rename(type_name, obj.get_mut("StartAt"))?;
    if let Some(Value::Object(states)) = obj.remove("States") {
        let mut renamed = Map::new();
        for (name, mut state) in states {
            rewrite_state(type_name, &mut state, bindings, query_language.as_deref())?;
            renamed.insert(checked_name(type_name, &name)?, state);
        }
        obj.insert("States".into(), Value::Object(renamed));
    }
    Ok(())
}

fn rename(type_name: &str, target: Option<&mut Value>) -> Result<(), String> {
    if let Some(v) = target
        && let Some(name) = v.as_str()
    {
        *v = Value::from(checked_name(type_name, name)?);
    }
    Ok(())
}

/// Replaces `${Step}` in the state's strings (its Resource, or a FunctionName in its
/// Parameters) — but not inside Map or Parallel bodies, which are rewritten on their own —
/// and returns the step its Resource names, if it names one.
fn bind_resources<'a>(state: &mut Value, bindings: &'a [StepBinding]) -> Option<&'a StepBinding> {
    let mut named = None;
    if let Some(obj) = state.as_object_mut() {
        for (k, v) in obj.iter_mut() {
            if matches!(k.as_str(), "ItemProcessor" | "Iterator" | "Branches") {
                continue;
            }
            substitute(v, bindings, &mut named);
        }
    }
    named
}

fn substitute<'a>(v: &mut Value, bindings: &'a [StepBinding], named: &mut Option<&'a StepBinding>) {
    match v {
        Value::String(s) if s.contains("${") => {
            for b in bindings {
                let pattern = format!("${{{}}}", b.step);
                if s.contains(&pattern) {
                    *s = s.replace(&pattern, &format!("${{{}}}", b.substitution));
                    *named = Some(b);
                }
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|i| substitute(i, bindings, named)),
        Value::Object(m) => m.values_mut().for_each(|i| substitute(i, bindings, named)),
        _ => {}
    }
}

/// A step Task retries Lambda's transient errors and times out as its step says (a callback
/// Task waits without that limit: the step only hands out the token), unless the workflow
/// says otherwise.
fn step_defaults(obj: &mut Map<String, Value>, step: &StepBinding) {
    if obj.get("Type").and_then(Value::as_str) != Some("Task") {
        return;
    }
    // A callback Task's wait is not its step's run: it waits as long as the job may.
    let callback = obj
        .get("Resource")
        .and_then(Value::as_str)
        .is_some_and(|r| r.ends_with(".waitForTaskToken"));
    if !callback && !obj.contains_key("TimeoutSeconds") && !obj.contains_key("TimeoutSecondsPath") {
        obj.insert(
            "TimeoutSeconds".into(),
            Value::from(step.def.timeout_seconds()),
        );
    }
    let retry = obj
        .entry("Retry")
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(retriers) = retry {
        let covered = retriers.iter().any(|r| {
            r.get("ErrorEquals")
                .and_then(Value::as_array)
                .is_some_and(|e| e.iter().any(|n| n == LAMBDA_SERVICE_ERRORS[0]))
        });
        if !covered {
            retriers.insert(
                0,
                json!({
                    "ErrorEquals": LAMBDA_SERVICE_ERRORS,
                    "IntervalSeconds": 1,
                    "MaxAttempts": 4,
                    "BackoffRate": 2,
                    "JitterStrategy": "FULL"
                }),
            );
        }
    }
}

/// A top-level state of a type: its end leads to Complete, its uncaught errors to
/// MarkFailed.
fn lead_to_base(state: &mut Value) {
    let Some(obj) = state.as_object_mut() else {
        return;
    };
    let kind = obj
        .get("Type")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if kind == "Succeed" {
        // A Succeed ends the type's part, not the execution: Complete still has to run.
        obj.insert("Type".into(), Value::from("Pass"));
        obj.insert("Next".into(), Value::from("Complete"));
    }
    if obj.get("End") == Some(&Value::Bool(true)) {
        obj.remove("End");
        obj.insert("Next".into(), Value::from("Complete"));
    }
    if matches!(kind.as_str(), "Task" | "Map" | "Parallel") {
        let catch = obj
            .entry("Catch")
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(catchers) = catch {
            let catches_all = catchers.iter().any(|c| {
                c.get("ErrorEquals")
                    .and_then(Value::as_array)
                    .is_some_and(|e| e.iter().any(|n| n == "States.ALL"))
            });
            if !catches_all {
                catchers.push(json!({"ErrorEquals": ["States.ALL"], "Next": "MarkFailed"}));
            }
        }
    }
}

/// The definition as text with ASL's usual key order (Type first, transitions last), so the
/// generated file reads like a hand-written one.
pub fn pretty(v: &Value) -> String {
    let mut out = String::new();
    write_pretty(v, 0, &mut out);
    out.push('\n');
    out
}

const KEY_ORDER: &[&str] = &[
    "Comment",
    "QueryLanguage",
    "StartAt",
    "Version",
    "Type",
    "Resource",
    "ErrorEquals",
    "Variable",
    "Condition",
    "InputPath",
    "ItemsPath",
    "Items",
    "MaxConcurrency",
    "Parameters",
    "Arguments",
    "ItemSelector",
    "ItemProcessor",
    "Iterator",
    "Branches",
    "Seconds",
    "SecondsPath",
    "Timestamp",
    "TimestampPath",
    "ResultSelector",
    "ResultPath",
    "OutputPath",
    "Output",
    "Assign",
    "IntervalSeconds",
    "MaxAttempts",
    "BackoffRate",
    "MaxDelaySeconds",
    "JitterStrategy",
    "TimeoutSeconds",
    "HeartbeatSeconds",
    "Retry",
    "Catch",
    "Choices",
    "Default",
    "Error",
    "ErrorPath",
    "Cause",
    "CausePath",
    "Next",
    "End",
    "States",
];

/// The states in the order a reader follows them: from StartAt, depth first along the
/// main path (Next, then each choice, then Default), error handlers after; any unreachable
/// ones last, by name.
fn flow_order<'a>(states: &'a Map<String, Value>, start: Option<&str>) -> Vec<&'a String> {
    let mut order: Vec<&String> = Vec::new();
    let mut stack: Vec<&str> = start.into_iter().collect();
    let mut handlers: Vec<&str> = Vec::new();
    while let Some(name) = stack
        .pop()
        .or_else(|| (!handlers.is_empty()).then(|| handlers.remove(0)))
    {
        let Some((key, state)) = states.get_key_value(name) else {
            continue;
        };
        if order.contains(&key) {
            continue;
        }
        order.push(key);
        let mut next: Vec<&str> = Vec::new();
        next.extend(state.get("Next").and_then(Value::as_str));
        if let Some(items) = state.get("Choices").and_then(Value::as_array) {
            next.extend(
                items
                    .iter()
                    .filter_map(|i| i.get("Next").and_then(Value::as_str)),
            );
        }
        next.extend(state.get("Default").and_then(Value::as_str));
        stack.extend(next.into_iter().rev());
        if let Some(items) = state.get("Catch").and_then(Value::as_array) {
            handlers.extend(
                items
                    .iter()
                    .filter_map(|i| i.get("Next").and_then(Value::as_str)),
            );
        }
    }
    for k in states.keys() {
        if !order.contains(&k) {
            order.push(k);
        }
    }
    order
}

fn write_pretty(v: &Value, indent: usize, out: &mut String) {
    write_value(v, indent, None, out);
}

/// `start`: set when `v` is a States map, to order the states by flow.
fn write_value(v: &Value, indent: usize, start: Option<&str>, out: &mut String) {
    let pad = |n: usize| "  ".repeat(n);
    match v {
        Value::Object(m) if !m.is_empty() => {
            let keys: Vec<&String> = if start.is_some() {
                flow_order(m, start)
            } else {
                let mut keys: Vec<&String> = m.keys().collect();
                // Keys ASL does not order (a Choice rule's comparison, Parameters' own keys)
                // come before the transitions.
                let unknown = KEY_ORDER.iter().position(|o| *o == "Choices").unwrap_or(0);
                keys.sort_by_key(|k| {
                    (
                        KEY_ORDER.iter().position(|o| o == k).unwrap_or(unknown),
                        (*k).clone(),
                    )
                });
                keys
            };
            let states_start = m.get("StartAt").and_then(Value::as_str);
            out.push_str("{\n");
            for (i, k) in keys.iter().enumerate() {
                out.push_str(&pad(indent + 1));
                out.push_str(&Value::from(k.as_str()).to_string());
                out.push_str(": ");
                let child_start = if k.as_str() == "States" && start.is_none() {
                    states_start
                } else {
                    None
                };
                write_value(&m[k.as_str()], indent + 1, child_start, out);
                if i + 1 < keys.len() {
                    out.push(',');
                }
                out.push('\n');
            }
            out.push_str(&pad(indent));
            out.push('}');
        }
        Value::Array(a) if !a.is_empty() && a.iter().all(|x| !x.is_object() && !x.is_array()) => {
            // Short lists of strings (ErrorEquals) on one line.
            let items: Vec<String> = a.iter().map(Value::to_string).collect();
            out.push('[');
            out.push_str(&items.join(", "));
            out.push(']');
        }
        Value::Array(a) if !a.is_empty() => {
            out.push_str("[\n");
            for (i, x) in a.iter().enumerate() {
                out.push_str(&pad(indent + 1));
                write_value(x, indent + 1, None, out);
                if i + 1 < a.len() {
                    out.push(',');
                }
                out.push('\n');
            }
            out.push_str(&pad(indent));
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}
