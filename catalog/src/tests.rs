use super::*;
use serde_json::json;

fn rust_code() -> RustCode {
    struct NoCheck;
    impl InputCheck for NoCheck {}
    RustCode {
        steps: [
            "demo-step",
            "csv-plan",
            "csv-aggregate",
            "csv-merge",
            "echo",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        input_checks: [("demo", ()), ("csv-report", ())]
            .into_iter()
            .map(|(n, ())| (n.to_string(), Arc::new(NoCheck) as Arc<dyn InputCheck>))
            .collect(),
    }
}

fn folder(name: &str, def: Value, workflow: Value) -> JobTypeFolder {
    JobTypeFolder::parse(name, None, &def.to_string(), &workflow.to_string()).unwrap()
}

fn echo_def() -> Value {
    json!({
        "description": "Echoes.",
        "inputSchema": {"type": "object"},
        "steps": {"Echo": {"runtime": "rust", "handler": "echo"}}
    })
}

fn echo_workflow() -> Value {
    json!({"StartAt": "Echo", "States": {"Echo": {"Type": "Task", "Resource": "${Echo}", "End": true}}})
}

#[test]
fn the_builtin_types_compose_into_one_valid_workflow() {
    let c = Catalog::new(builtin_folders(), &rust_code()).unwrap();
    assert_eq!(c.job_types().names(), vec!["demo", "csv-report"]);
    let wf = c.workflow();
    let route = wf["States"]["Route"]["Choices"].as_array().unwrap();
    assert_eq!(route[0]["Next"], "demo.Wait");
    assert_eq!(route[1]["Next"], "csv-report.Plan");
    let plan = &wf["States"]["csv-report.Plan"];
    assert_eq!(plan["Resource"], "${CsvReportPlanFunctionArn}");
    assert_eq!(plan["Next"], "csv-report.Aggregate");
    assert_eq!(plan["TimeoutSeconds"], 900);
    assert_eq!(
        plan["Retry"][0]["ErrorEquals"][0],
        "Lambda.ServiceException"
    );
    assert_eq!(plan["Catch"][0]["Next"], "MarkFailed");
    let chunk = &wf["States"]["csv-report.Aggregate"]["ItemProcessor"];
    assert_eq!(chunk["StartAt"], "csv-report.AggregateChunk");
    assert_eq!(
        chunk["States"]["csv-report.AggregateChunk"]["Resource"],
        "${CsvReportAggregateFunctionArn}"
    );
    assert_eq!(wf["States"]["csv-report.Merge"]["Next"], "Complete");
    assert_eq!(wf["States"]["demo.Done"]["Next"], "Complete");
    assert!(wf["States"]["demo.Done"].get("End").is_none());
    let subst = c.substitutions(|s| s.to_string());
    assert!(subst.contains_key("DemoStepFunctionArn"));
    assert!(subst.contains_key("RegisterFunctionArn"));
}

#[test]
fn succeed_and_end_lead_to_complete_and_errors_to_mark_failed() {
    let wf = json!({"StartAt": "Echo", "States": {
        "Echo": {"Type": "Task", "Resource": "${Echo}", "Next": "Check",
                 "Catch": [{"ErrorEquals": ["ValueError"], "Next": "Done"}]},
        "Check": {"Type": "Choice", "Choices": [{"Variable": "$.x", "IsPresent": true, "Next": "Done"}], "Default": "Done"},
        "Done": {"Type": "Succeed"}
    }});
    let c = Catalog::new(vec![folder("echo", echo_def(), wf)], &rust_code()).unwrap();
    let s = &c.workflow()["States"];
    assert_eq!(s["echo.Done"]["Type"], "Pass");
    assert_eq!(s["echo.Done"]["Next"], "Complete");
    let catch = s["echo.Echo"]["Catch"].as_array().unwrap();
    assert_eq!(catch[0]["Next"], "echo.Done");
    assert_eq!(
        catch[1],
        json!({"ErrorEquals": ["States.ALL"], "Next": "MarkFailed"})
    );
    assert_eq!(s["echo.Check"]["Choices"][0]["Next"], "echo.Done");
}

#[test]
fn bad_folders_are_refused_naming_the_file_and_the_reason() {
    let cases: Vec<(Value, Value, &str, &str)> = vec![
        (
            echo_def(),
            json!({"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "${Other}", "End": true}}}),
            "workflow.asl.json",
            "${Other} is not a step",
        ),
        (
            json!({"description": "x", "inputSchema": {"type": "object"}, "steps": {
                "Echo": {"runtime": "rust", "handler": "echo"},
                "Unused": {"runtime": "rust", "handler": "echo"}}}),
            echo_workflow(),
            "jobtype.json",
            "steps.Unused: the workflow never runs it",
        ),
        (
            json!({"description": "x", "inputSchema": {"type": "object"}, "steps": {
                "Echo": {"runtime": "rust", "handler": "missing"}}}),
            echo_workflow(),
            "jobtype.json",
            "no Rust step named \"missing\"",
        ),
        (
            echo_def(),
            json!({"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "${Echo}", "Next": "Nowhere"}}}),
            "workflow.asl.json",
            "Nowhere",
        ),
        (
            json!({"description": "x", "inputSchema": {"type": "object"}, "inputCheck": "nope", "steps": {
                "Echo": {"runtime": "rust", "handler": "echo"}}}),
            echo_workflow(),
            "jobtype.json",
            "inputCheck",
        ),
    ];
    for (def, wf, file, want) in cases {
        let e = Catalog::new(vec![folder("t", def, wf)], &rust_code()).unwrap_err();
        assert!(e.file.ends_with(file), "{e}");
        assert!(e.message.contains(want), "{e}");
    }
    // SAM substitutes `${Name}` in comments too: an unknown one there is refused as well.
    let wf = json!({"Comment": "Tasks name steps as ${StepName}.", "StartAt": "Echo",
        "States": {"Echo": {"Type": "Task", "Resource": "${Echo}", "End": true}}});
    let e = Catalog::new(vec![folder("t", echo_def(), wf)], &rust_code()).unwrap_err();
    assert!(e.message.contains("${StepName} is not a step"), "{e}");
    let e = JobTypeFolder::parse("t", None, "{", "{}").unwrap_err();
    assert!(e.file.ends_with("jobtype.json"), "{e}");
    let e = JobTypeFolder::parse("t", None, &echo_def().to_string(), "[").unwrap_err();
    assert!(
        e.to_string().contains("workflow.asl.json: not valid JSON"),
        "{e}"
    );
    let e = JobTypeFolder::parse("Bad", None, "{}", "{}").unwrap_err();
    assert!(e.message.contains("not a job type name"), "{e}");
}

#[test]
fn a_name_clash_is_refused() {
    let a = folder("echo", echo_def(), echo_workflow());
    let e = Catalog::new(vec![a.clone(), a], &rust_code()).unwrap_err();
    assert!(e.message.contains("also defined"), "{e}");
    // Two types whose AWS names collide: a-1 + Echo and a1 + Echo.
    let e = Catalog::new(
        vec![
            folder("a-1", echo_def(), echo_workflow()),
            folder("a1", echo_def(), echo_workflow()),
        ],
        &rust_code(),
    )
    .unwrap_err();
    assert!(e.message.contains("same AWS name"), "{e}");
}

#[test]
fn folders_on_disk_load_with_their_code_checked() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("count");
    std::fs::create_dir(&t).unwrap();
    std::fs::write(
        t.join("jobtype.json"),
        json!({"description": "Counts.", "inputSchema": {"type": "object"},
               "steps": {"Count": {"runtime": "python3.12", "handler": "count.handler"}}})
        .to_string(),
    )
    .unwrap();
    std::fs::write(
        t.join("workflow.asl.json"),
        json!({"StartAt": "Count", "States": {"Count": {"Type": "Task", "Resource": "${Count}", "End": true}}}).to_string(),
    )
    .unwrap();
    let folders = load_dir(dir.path()).unwrap();
    let e = Catalog::new(folders, &rust_code()).unwrap_err();
    assert!(e.message.contains("count.py, which does not exist"), "{e}");
    std::fs::write(
        t.join("count.py"),
        "def handler(event, context):\n    return event\n",
    )
    .unwrap();
    let c = Catalog::new(load_dir(dir.path()).unwrap(), &rust_code()).unwrap();
    assert_eq!(c.bindings()[0].aws_name, "CountCount");
    assert_eq!(c.bindings()[0].dir.as_deref(), Some(t.as_path()));
}

#[test]
fn the_pretty_printer_keeps_asl_order_and_round_trips() {
    let c = Catalog::new(builtin_folders(), &rust_code()).unwrap();
    let text = c.workflow_text();
    let back: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(&back, c.workflow());
    let register = text.find("\"Register\": {").unwrap();
    let ty = text[register..].find("\"Type\"").unwrap();
    let next = text[register..].find("\"Next\"").unwrap();
    assert!(ty < next, "Type comes before Next");
}

#[test]
fn a_jsonata_type_keeps_its_query_language_in_the_composed_workflow() {
    let wf = json!({"QueryLanguage": "JSONata", "StartAt": "Echo", "States": {
        "Echo": {"Type": "Task", "Resource": "${Echo}", "Arguments": {"n": "{% $states.input.input.n %}"},
                 "Output": "{% {'result': $states.result} %}", "Next": "Check"},
        "Check": {"Type": "Choice", "Choices": [{"Condition": "{% $states.input.result.n > 1 %}", "Next": "Done"}], "Default": "Done"},
        "Done": {"Type": "Succeed"}
    }});
    let c = Catalog::new(vec![folder("echo", echo_def(), wf)], &rust_code()).unwrap();
    let s = &c.workflow()["States"];
    for name in ["echo.Echo", "echo.Check", "echo.Done"] {
        assert_eq!(s[name]["QueryLanguage"], "JSONata", "{name}");
    }
    // The base states stay JSONPath; the composed machine is valid as a whole.
    assert!(s["Register"].get("QueryLanguage").is_none());
    assert_eq!(s["echo.Echo"]["Catch"][0]["Next"], "MarkFailed");
}

#[test]
fn a_callback_task_names_its_step_and_waits_without_the_steps_timeout() {
    let wf = json!({"StartAt": "Ask", "States": {"Ask": {
        "Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
        "Parameters": {"FunctionName": "${Echo}", "Payload": {"token.$": "$$.Task.Token"}},
        "End": true}}});
    let c = Catalog::new(vec![folder("echo", echo_def(), wf)], &rust_code()).unwrap();
    let ask = &c.workflow()["States"]["echo.Ask"];
    assert_eq!(ask["Parameters"]["FunctionName"], "${EchoEchoFunctionArn}");
    assert!(
        ask.get("TimeoutSeconds").is_none(),
        "the step's timeout does not limit the wait: {ask}"
    );
    assert_eq!(ask["Retry"][0]["ErrorEquals"][0], "Lambda.ServiceException");
    assert_eq!(ask["Next"], "Complete");
}

#[test]
fn http_tasks_need_no_steps_and_give_the_state_machine_their_permissions() {
    let wf = json!({"StartAt": "Call", "States": {"Call": {
        "Type": "Task",
        "Resource": "arn:aws:states:::http:invoke",
        "Parameters": {"ApiEndpoint": "https://api.example.com/x", "Method": "GET",
                       "Authentication": {"ConnectionArn": "arn:aws:events:us-east-1:123456789012:connection/x/1"}},
        "End": true}}});
    let def =
        json!({"description": "Calls an API.", "inputSchema": {"type": "object"}, "steps": {}});
    let with_http = Catalog::new(vec![folder("call", def, wf)], &rust_code()).unwrap();
    let yaml = template::template(&with_http, std::path::Path::new(".")).unwrap();
    assert!(yaml.contains("states:InvokeHTTPEndpoint"), "{yaml}");
    assert!(yaml.contains("events:RetrieveConnectionCredentials"));
    let builtin = Catalog::new(builtin_folders(), &rust_code()).unwrap();
    let yaml = template::template(&builtin, std::path::Path::new(".")).unwrap();
    assert!(!yaml.contains("states:InvokeHTTPEndpoint"));
}
