//! The committed template.yaml against the mistakes a deploy would only show on AWS (each
//! was found once in this template): rules cfn-lint and moto do not check. The functions'
//! IAM policies are run by lambda/tests/iam_on_moto.rs; the rules here are the ones moto
//! does not model (missing keys, conditions, DynamoDB and Step Functions resources), kept
//! for the Python and Node steps as well, and without moto.

use serde_yaml::Value;

fn template() -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml");
    serde_yaml::from_str(&std::fs::read_to_string(path).expect("template.yaml"))
        .expect("template.yaml parses")
}

fn resources(t: &Value) -> Vec<(String, &Value)> {
    t["Resources"]
        .as_mapping()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.as_str().unwrap().to_string(), v))
        .collect()
}

fn of_type<'a>(t: &'a Value, kind: &str) -> Vec<(String, &'a Value)> {
    resources(t)
        .into_iter()
        .filter(|(_, r)| r["Type"].as_str() == Some(kind))
        .collect()
}

/// A tagged value's text (`!Ref X`, `!GetAtt X.Arn`, `!Sub "..."`), for matching.
fn text(v: &Value) -> String {
    format!("{v:?}")
}

#[test]
fn rest_access_logs_come_with_the_accounts_cloudwatch_role() {
    let t = template();
    let api = &t["Resources"]["Api"];
    assert!(api["Properties"]["AccessLogSetting"].is_mapping());
    let accounts = of_type(&t, "AWS::ApiGateway::Account");
    assert_eq!(
        accounts.len(),
        1,
        "a fresh account has no CloudWatch role for API Gateway"
    );
    assert_eq!(api["DependsOn"].as_str(), Some(accounts[0].0.as_str()));
}

#[test]
fn alarm_topics_use_a_key_cloudwatch_may_use() {
    let t = template();
    for (name, topic) in of_type(&t, "AWS::SNS::Topic") {
        let key = text(&topic["Properties"]["KmsMasterKeyId"]);
        assert!(
            !key.contains("alias/aws/"),
            "{name}: CloudWatch cannot publish under an AWS managed key"
        );
        let key_name = key
            .split(|c: char| !c.is_ascii_alphanumeric())
            .find(|w| t["Resources"][*w].is_mapping())
            .unwrap_or_else(|| panic!("{name}: its key is a resource of this template: {key}"));
        let policy = text(&t["Resources"][key_name]["Properties"]["KeyPolicy"]);
        assert!(
            policy.contains("cloudwatch.amazonaws.com"),
            "{key_name} lets CloudWatch in"
        );
    }
}

#[test]
fn api_gateways_own_errors_have_the_apis_error_shape() {
    let t = template();
    let responses = t["Resources"]["Api"]["Properties"]["GatewayResponses"]
        .as_mapping()
        .expect("GatewayResponses");
    let codes = [
        "bad_request",
        "unauthorized",
        "not_found",
        "conflict",
        "payload_too_large",
        "too_many_requests",
        "unavailable",
        "internal",
    ];
    for kind in [
        "UNAUTHORIZED",
        "ACCESS_DENIED",
        "MISSING_AUTHENTICATION_TOKEN",
        "THROTTLED",
        "REQUEST_TOO_LARGE",
        "DEFAULT_4XX",
        "DEFAULT_5XX",
    ] {
        let r = &responses[kind];
        let body = r["ResponseTemplates"]["application/json"]
            .as_str()
            .unwrap_or_else(|| panic!("{kind} has no JSON body"));
        // API Gateway puts a quoted JSON string where $context.error.messageString is.
        let body = body.replace("$context.error.messageString", "\"Unauthorized\"");
        let v: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{kind}: {e}"));
        let code = v["error"]["code"].as_str().unwrap_or_default();
        assert!(codes.contains(&code), "{kind}: code {code:?}");
        assert!(v["error"]["message"].is_string(), "{kind}");
    }
    assert_eq!(
        responses["UNAUTHORIZED"]["ResponseParameters"]["Headers"]["WWW-Authenticate"].as_str(),
        Some("'Bearer'")
    );
}

/// The committed template and one generated with the examples (a Python and a Node type),
/// so the Python and Node steps' policy is checked as users get it.
fn templates() -> Vec<(&'static str, Value)> {
    use std::sync::Arc;
    struct NoCheck;
    impl longhaul_jobs::InputCheck for NoCheck {}
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut folders = longhaul_catalog::builtin_folders();
    folders.extend(longhaul_catalog::load_dir(&root.join("examples")).expect("the examples load"));
    let rust = longhaul_catalog::RustCode {
        steps: ["demo-step", "csv-plan", "csv-aggregate", "csv-merge"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        input_checks: ["demo", "csv-report"]
            .iter()
            .map(|n| {
                (
                    n.to_string(),
                    Arc::new(NoCheck) as Arc<dyn longhaul_jobs::InputCheck>,
                )
            })
            .collect(),
    };
    let catalog = longhaul_catalog::Catalog::new(folders, &rust).expect("a catalog");
    let text = longhaul_catalog::template::template(&catalog, &root).expect("a template");
    let with_examples = serde_yaml::from_str(&text).expect("the template parses");
    vec![
        ("template.yaml", template()),
        ("with the examples", with_examples),
    ]
}

/// Each function's Allow statements: (actions, resources as text, condition as text).
fn statements(function: &Value) -> Vec<(Vec<String>, Vec<String>, String)> {
    let list = |v: &Value| -> Vec<String> {
        match v {
            Value::Sequence(items) => items
                .iter()
                .map(|x| x.as_str().map_or_else(|| text(x), str::to_string))
                .collect(),
            Value::String(s) => vec![s.clone()],
            other => vec![text(other)],
        }
    };
    let mut out = Vec::new();
    for policy in function["Properties"]["Policies"]
        .as_sequence()
        .into_iter()
        .flatten()
    {
        for st in policy["Statement"].as_sequence().into_iter().flatten() {
            assert_eq!(st["Effect"].as_str(), Some("Allow"));
            out.push((
                list(&st["Action"]),
                list(&st["Resource"]),
                text(&st["Condition"]),
            ));
        }
    }
    out
}

/// What kind of function it is, by `LONGHAUL_FUNCTION` or runtime.
fn kind(f: &Value) -> &str {
    if !f["Properties"]["Runtime"].is_null() {
        return "external-step";
    }
    match f["Properties"]["Environment"]["Variables"]["LONGHAUL_FUNCTION"].as_str() {
        Some(
            n @ ("api" | "register" | "complete" | "mark-failed" | "track-status" | "progress"
            | "timeouts"),
        ) => n,
        _ => "rust-step",
    }
}

#[test]
fn missing_keys_are_404s_where_an_answer_depends_on_it() {
    // Without s3:ListBucket (with the key as s3:prefix), S3 answers HeadObject/GetObject of
    // a missing key with 403, which moto does not model. lambda/tests/iam_on_moto.rs proves
    // it per request for the Rust functions; this covers the Python and Node steps too.
    // api: startJob over an upload not made yet (400, not 500), file links to a gone file;
    // Register: the HeadObject before each download; Complete: named files that are not
    // there; steps: an input file that is gone (InputNotFound).
    for (which, t) in templates() {
        for (name, f) in of_type(&t, "AWS::Serverless::Function") {
            let needs: &[&str] = match kind(f) {
                "api" | "rust-step" | "external-step" => &["jobs/*", "uploads/*"],
                "register" | "complete" => &["jobs/*"],
                _ => &[],
            };
            let listable: Vec<String> = statements(f)
                .into_iter()
                .filter(|(actions, _, _)| actions.iter().any(|a| a == "s3:ListBucket"))
                .map(|(_, _, condition)| condition)
                .collect();
            for prefix in needs {
                assert!(
                    listable
                        .iter()
                        .any(|c| c.contains(&format!("\"{prefix}\""))),
                    "{which}: {name} cannot list {prefix}: a missing key there is a 403"
                );
            }
        }
    }
}

#[test]
fn listing_is_bounded_to_the_jobs_and_uploads_prefixes() {
    // moto ignores conditions: a ListBucket grant without its s3:prefix condition would pass
    // every test and let a function list the whole bucket.
    for (which, t) in templates() {
        for (name, f) in of_type(&t, "AWS::Serverless::Function") {
            for (actions, resources, condition) in statements(f) {
                if !actions.iter().any(|a| a == "s3:ListBucket") {
                    continue;
                }
                assert_eq!(
                    actions.len(),
                    1,
                    "{which}: {name}: ListBucket alone in its statement"
                );
                assert!(
                    resources.len() == 1 && resources[0].contains("FilesBucket.Arn"),
                    "{which}: {name}: ListBucket on the files bucket only: {resources:?}"
                );
                let f = &f["Properties"]["Policies"];
                let prefixes: Vec<String> = f
                    .as_sequence()
                    .into_iter()
                    .flatten()
                    .flat_map(|p| p["Statement"].as_sequence().into_iter().flatten())
                    .filter(|st| text(&st["Action"]).contains("s3:ListBucket"))
                    .flat_map(|st| {
                        let c = &st["Condition"]["StringLike"]["s3:prefix"];
                        c.as_sequence()
                            .into_iter()
                            .flatten()
                            .filter_map(|p| p.as_str().map(str::to_string))
                            .collect::<Vec<_>>()
                    })
                    .collect();
                assert!(
                    !prefixes.is_empty()
                        && prefixes.iter().all(|p| p == "jobs/*" || p == "uploads/*"),
                    "{which}: {name}: ListBucket bounded by StringLike s3:prefix (jobs/*, uploads/*): {condition}"
                );
            }
        }
    }
}

#[test]
fn function_policies_name_their_resources() {
    // moto authorizes DynamoDB and Step Functions calls on resource `*`, so it cannot tell a
    // grant on the table from one on every table. The IAM test checks the Rust functions'
    // requests; this keeps every function's grants on this stack's resources.
    for (which, t) in templates() {
        for (name, f) in of_type(&t, "AWS::Serverless::Function") {
            for (actions, resources, _) in statements(f) {
                for r in &resources {
                    let ok = actions.iter().all(|a| {
                        let (service, action) = a.split_once(':').unwrap_or(("", a));
                        match service {
                            "dynamodb" => r.contains("JobsTable.Arn"),
                            "states" if action == "StartExecution" => r.contains("JobStateMachine"),
                            // A task token names no resource IAM can scope.
                            "states" if action.starts_with("SendTask") => r == "*",
                            "states" => r.contains(":execution:${AWS::StackName}-jobs:"),
                            "s3" if action == "ListBucket" => r.contains("FilesBucket.Arn"),
                            "s3" => {
                                r.contains("${FilesBucket.Arn}/jobs/")
                                    || r.contains("${FilesBucket.Arn}/uploads/")
                            }
                            _ => false,
                        }
                    });
                    assert!(ok, "{which}: {name}: {actions:?} on {r}");
                }
            }
        }
    }
}

#[test]
fn python_and_node_steps_write_only_their_jobs_output() {
    // Their code is the user's: it reads its inputs and writes result files under its
    // job's output prefix; progress goes through its log (no table access).
    let (_, t) = templates().pop().expect("the template with the examples");
    let external: Vec<(String, &Value)> = of_type(&t, "AWS::Serverless::Function")
        .into_iter()
        .filter(|(_, f)| kind(f) == "external-step")
        .collect();
    assert!(external.len() >= 3, "the examples' Python and Node steps");
    for (name, f) in external {
        for (actions, resources, _) in statements(f) {
            for a in &actions {
                assert!(
                    [
                        "s3:GetObject",
                        "s3:PutObject",
                        "s3:AbortMultipartUpload",
                        "s3:ListBucket"
                    ]
                    .contains(&a.as_str()),
                    "{name}: {a}"
                );
                if a == "s3:PutObject" || a == "s3:AbortMultipartUpload" {
                    assert!(
                        resources.iter().all(|r| r.contains("/jobs/*/output/*")),
                        "{name}: {a} on {resources:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn the_sign_in_survives_and_can_be_brought() {
    let t = template();
    let pool = &t["Resources"]["UserPool"];
    assert_eq!(
        pool["DeletionPolicy"].as_str(),
        Some("Retain"),
        "a new pool changes every sub"
    );
    assert_eq!(pool["UpdateReplacePolicy"].as_str(), Some("Retain"));
    let params = &t["Parameters"];
    assert!(params["ExistingUserPoolArn"].is_mapping());
    assert_eq!(pool["Condition"].as_str(), Some("CreateUserPool"));
    let callback = params["GptCallbackUrls"]["Default"].as_str().unwrap();
    assert!(callback.starts_with("https://chatgpt.com/"), "{callback}");
}

#[test]
fn vpc_endpoint_type_and_architecture_are_parameters() {
    let t = template();
    for p in [
        "VpcSubnetIds",
        "VpcSecurityGroupIds",
        "ApiEndpointType",
        "LambdaArchitecture",
    ] {
        assert!(t["Parameters"][p].is_mapping(), "{p}");
    }
    assert_eq!(
        t["Parameters"]["ApiEndpointType"]["Default"].as_str(),
        Some("REGIONAL")
    );
    let globals = &t["Globals"]["Function"];
    assert!(text(&globals["VpcConfig"]).contains("HasVpc"));
    assert!(text(&globals["Architectures"]).contains("LambdaArchitecture"));
    assert!(
        text(&t["Resources"]["Api"]["Properties"]["EndpointConfiguration"])
            .contains("ApiEndpointType")
    );
}

#[test]
fn jobs_expire_with_their_files_and_lost_tracker_events_alarm() {
    let t = template();
    let env = &t["Globals"]["Function"]["Environment"]["Variables"];
    assert!(text(&env["LONGHAUL_JOB_RETENTION_DAYS"]).contains("ResultRetentionDays"));
    let rules = text(&t["Resources"]["FilesBucket"]["Properties"]["LifecycleConfiguration"]);
    assert!(rules.contains("ResultRetentionDays"));
    let dlq_alarm = of_type(&t, "AWS::CloudWatch::Alarm")
        .into_iter()
        .find(|(_, a)| text(&a["Properties"]["Dimensions"]).contains("TrackerDeadLetters"));
    assert!(dlq_alarm.is_some(), "an alarm on the dead-letter queue");
    let policy = text(&t["Resources"]["TrackerDeadLettersPolicy"]["Properties"]["PolicyDocument"]);
    assert!(
        policy.contains("aws:SourceArn"),
        "only the tracker's rule may send"
    );
}

#[test]
fn every_rust_function_is_the_one_build() {
    // SAM builds functions with equal Metadata once: the Rust ones must all be equal.
    let t = template();
    let rust: Vec<(String, &Value)> = of_type(&t, "AWS::Serverless::Function")
        .into_iter()
        .filter(|(_, f)| f["Properties"]["Runtime"].is_null())
        .collect();
    assert!(rust.len() >= 9);
    let first = &rust[0].1["Metadata"];
    for (name, f) in &rust {
        assert_eq!(
            &f["Metadata"], first,
            "{name}'s Metadata differs: a second cargo lambda build"
        );
    }
    assert_eq!(t["Globals"]["Function"]["CodeUri"].as_str(), Some("lambda"));
}
