//! The committed template.yaml against the mistakes a deploy would only show on AWS (each
//! was found once in this template): rules cfn-lint and moto do not check.

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

/// Every IAM action a function's role is allowed, from its inline policy statements.
fn allowed_actions(function: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for policy in function["Properties"]["Policies"]
        .as_sequence()
        .into_iter()
        .flatten()
    {
        for st in policy["Statement"].as_sequence().into_iter().flatten() {
            if st["Effect"].as_str() != Some("Allow") {
                continue;
            }
            match &st["Action"] {
                Value::String(a) => out.push(a.clone()),
                Value::Sequence(a) => {
                    out.extend(a.iter().filter_map(|x| x.as_str().map(str::to_string)))
                }
                _ => {}
            }
        }
    }
    out
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

#[test]
fn every_role_that_reads_s3_may_list_so_a_missing_key_is_a_404() {
    // Without s3:ListBucket, S3 answers HeadObject/GetObject of a missing key with 403, which
    // moto does not model; Register and startJob look for keys that may not be there.
    let t = template();
    let functions = of_type(&t, "AWS::Serverless::Function");
    assert!(functions.len() >= 9);
    for (name, f) in functions {
        let actions = allowed_actions(f);
        if actions.iter().any(|a| a == "s3:GetObject") {
            assert!(
                actions.iter().any(|a| a == "s3:ListBucket"),
                "{name} reads S3 without s3:ListBucket"
            );
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
