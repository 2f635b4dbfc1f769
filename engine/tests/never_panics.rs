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

/// JSONPath expressions and intrinsic calls built from their grammar (and some noise):
/// paths with fields, indexes, slices, wildcards and recursion; every intrinsic with
/// arguments of every kind, nested.
fn expression() -> impl Strategy<Value = String> {
    let step = prop_oneof![
        8 => prop::sample::select(vec![
            ".a", ".b", "[0]", "[1]", "[-1]", "[*]", "..a", "['a']", "[0:2]", "[99999999999]",
        ]),
        1 => prop::sample::select(vec!["['x y']", "[::-1]", "[?(@.a)]", ".length()", "['", "]", ".", ".."]),
    ];
    let path = prop::collection::vec(step, 0..5).prop_map(|parts| format!("${}", parts.concat()));
    let context = prop::sample::select(vec![
        "$$.Execution.Id",
        "$$.State.Name",
        "$$.Map.Item.Value",
        "$$",
        "$$.nope",
    ])
    .prop_map(str::to_string);
    let literal = prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| f.to_string()),
        Just("1e308".to_string()),
        Just("null".to_string()),
        Just("true".to_string()),
        "[a-z{}\\\\' ]{0,8}".prop_map(|s| format!("'{s}'")),
        Just("'\\{\\}'".to_string()),
    ];
    let leaf = prop_oneof![path, context, literal];
    leaf.prop_recursive(3, 24, 4, |inner| {
        (
            prop::sample::select(vec![
                "States.Format",
                "States.StringToJson",
                "States.JsonToString",
                "States.Array",
                "States.ArrayPartition",
                "States.ArrayContains",
                "States.ArrayRange",
                "States.ArrayGetItem",
                "States.ArrayLength",
                "States.ArrayUnique",
                "States.Base64Encode",
                "States.Base64Decode",
                "States.Hash",
                "States.JsonMerge",
                "States.MathRandom",
                "States.MathAdd",
                "States.StringSplit",
                "States.UUID",
                "States.Nope",
            ]),
            prop::collection::vec(inner, 0..4),
        )
            .prop_map(|(f, args)| format!("{f}({})", args.join(", ")))
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, .. ProptestConfig::default() })]

    #[test]
    fn paths_and_intrinsics_evaluate_or_fail_cleanly(expr in expression(), input in json_value()) {
        let def = json!({"StartAt": "P", "States": {"P": {"Type": "Pass", "Parameters": {"x.$": expr}, "End": true}}});
        if let Ok(machine) = StateMachine::parse(&def.to_string(), &BTreeMap::new()) {
            let rt = runtime();
            rt.block_on(async {
                let engine = Engine::new(Arc::new(MemoryExecutionStore::new()), Arc::new(Echo));
                let sm = engine.create_state_machine("p", machine).await.unwrap();
                let exec = engine.start_execution(&sm, None, input).await.unwrap();
                let d = tokio::time::timeout(Duration::from_secs(5), engine.wait_for_completion(&exec.execution_arn))
                    .await
                    .expect("an expression must not hang the engine")
                    .unwrap();
                if d.status == longhaul_engine::ExecutionStatus::Failed {
                    let error = d.error.unwrap_or_default();
                    assert!(error.starts_with("States."), "a failed evaluation is a States.* error, not {error}");
                }
            });
        }
    }
}
