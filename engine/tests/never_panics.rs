//! Arbitrary JSON as a definition or an input never panics the engine: it is a validation
//! error, or it runs to a terminal status.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use longhaul_engine::{
    Engine, MemoryExecutionStore, StateMachine, TaskContext, TaskFailure, TaskInvoker,
};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

struct Echo;

#[async_trait]
impl TaskInvoker for Echo {
    async fn invoke(&self, _: &str, input: Value, _: TaskContext) -> Result<Value, TaskFailure> {
        Ok(input)
    }
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "[a-zA-Z$.\\[\\]*'(){},0-9 ]{0,24}".prop_map(Value::from),
        prop::sample::select(vec![
            "$",
            "$.a",
            "$$.State.Name",
            "$.a[0]",
            "$..x",
            "$.a[*]",
            "States.Format('{}', $.a)",
            "States.ArrayRange(0, 100000, 1)",
            "States.StringToJson($.s)",
            "States.Hash($.a, 'MD5')",
            "Pass",
            "Task",
            "Choice",
            "Wait",
            "Succeed",
            "Fail",
            "Parallel",
            "Map",
            "A",
            "B",
        ])
        .prop_map(Value::from),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::sample::select(vec![
                    "Type",
                    "Next",
                    "End",
                    "Resource",
                    "Parameters",
                    "x.$",
                    "InputPath",
                    "OutputPath",
                    "ResultPath",
                    "ResultSelector",
                    "Choices",
                    "Default",
                    "Variable",
                    "StringEquals",
                    "NumericLessThanPath",
                    "And",
                    "Not",
                    "Seconds",
                    "SecondsPath",
                    "Branches",
                    "StartAt",
                    "States",
                    "ItemsPath",
                    "ItemProcessor",
                    "Retry",
                    "Catch",
                    "ErrorEquals",
                    "MaxAttempts",
                    "Error",
                    "Cause",
                    "Result",
                    "TimeoutSeconds",
                ]),
                inner,
                0..6,
            )
            .prop_map(|m| Value::Object(
                m.into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect::<Map<_, _>>()
            )),
        ]
    })
}

/// Plausible definitions: a few states of random types with random fields, linked A → B.
fn state() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(vec![
            "Pass", "Task", "Choice", "Wait", "Succeed", "Fail", "Parallel", "Map",
        ]),
        json_value(),
    )
        .prop_map(|(ty, extra)| {
            let mut m = match extra {
                Value::Object(m) => m,
                _ => Map::new(),
            };
            m.insert("Type".into(), Value::from(ty));
            Value::Object(m)
        })
}

fn definition() -> impl Strategy<Value = Value> {
    (state(), state()).prop_map(|(a, b)| json!({"StartAt": "A", "States": {"A": a, "B": b}}))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, .. ProptestConfig::default() })]

    #[test]
    fn arbitrary_json_as_a_definition_never_panics(def in json_value()) {
        let _ = StateMachine::parse(&def.to_string(), &BTreeMap::new());
    }

    #[test]
    fn plausible_definitions_parse_or_run_to_an_end(def in definition(), input in json_value()) {
        if let Ok(machine) = StateMachine::parse(&def.to_string(), &BTreeMap::new()) {
            let rt = runtime();
            rt.block_on(async {
                let engine = Engine::new(Arc::new(MemoryExecutionStore::new()), Arc::new(Echo));
                let sm = engine.create_state_machine("p", machine).await.unwrap();
                let exec = engine.start_execution(&sm, None, input).await.unwrap();
                // Waits may be long: stop after a moment; what matters is no panic.
                if tokio::time::timeout(Duration::from_millis(300), engine.wait_for_completion(&exec.execution_arn)).await.is_err() {
                    engine.stop_execution(&exec.execution_arn, None, None).await.unwrap();
                }
                let d = engine.describe_execution(&exec.execution_arn).await.unwrap();
                assert_ne!(d.status, longhaul_engine::ExecutionStatus::Running);
            });
        }
    }
}

#[test]
fn deeply_nested_json_is_an_error_not_a_crash() {
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    assert!(StateMachine::parse(&deep, &BTreeMap::new()).is_err());
    let deep_obj = format!("{}1{}", "{\"a\":".repeat(10_000), "}".repeat(10_000));
    assert!(StateMachine::parse(&deep_obj, &BTreeMap::new()).is_err());
}

#[test]
fn a_huge_array_range_is_an_intrinsic_failure() {
    let def = json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "Parameters": {"r.$": "States.ArrayRange(0, 1000000000, 1)"}, "End": true}}});
    let machine = StateMachine::parse(&def.to_string(), &BTreeMap::new()).unwrap();
    runtime().block_on(async {
        let engine = Engine::new(Arc::new(MemoryExecutionStore::new()), Arc::new(Echo));
        let sm = engine.create_state_machine("p", machine).await.unwrap();
        let exec = engine.start_execution(&sm, None, json!({})).await.unwrap();
        let d = engine
            .wait_for_completion(&exec.execution_arn)
            .await
            .unwrap();
        assert_eq!(d.error.as_deref(), Some("States.IntrinsicFailure"));
    });
}

#[test]
fn huge_numbers_in_waits_and_retries_are_handled() {
    for def in [
        json!({"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 1e300, "End": true}}}),
        json!({"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 18446744073709551615u64, "End": true}}}),
        json!({"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "x", "Retry": [{"ErrorEquals": ["X"], "MaxAttempts": 1e308, "BackoffRate": 1e308}], "End": true}}}),
    ] {
        let _ = StateMachine::parse(&def.to_string(), &BTreeMap::new());
    }
}
