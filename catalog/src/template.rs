//! The SAM template from the base (`catalog/base/template.yaml`: Cognito, API Gateway, the
//! api and base step functions, the table, the bucket, alarms) and the catalog: one function
//! per job type step — Rust steps from the one bootstrap (`LONGHAUL_FUNCTION` names the
//! step), Python and Node steps from their folder in their runtime — each with its log
//! group, its Task substitution, the state machine's permission to invoke it and, for
//! Python and Node, the log subscription that carries their progress lines.
//!
//! The base marks where generated lines go with `# @generated NAME` comments; the output is
//! YAML text, so the base keeps its comments and order.

use std::fmt::Write as _;
use std::path::Path;

use longhaul_jobs::Runtime;

use crate::{Catalog, CatalogError, StepBinding};

/// The hand-written part of template.yaml.
pub const BASE_TEMPLATE: &str = include_str!("../base/template.yaml");

/// The checkov skips every function carries (why: next to each). The base template's Rust
/// functions carry the same text: SAM builds functions with equal Metadata once, so every
/// Rust function shares one `cargo lambda build`.
const FUNCTION_CHECKOV_SKIPS: &str = r#"      checkov:
        skip:
          - id: CKV_AWS_115
            comment: No reserved concurrency; new accounts have 10 in all and deploys would fail. The API stage throttles.
          - id: CKV_AWS_116
            comment: Invoked synchronously (API Gateway, Step Functions) or by a source that retries and keeps what fails (EventBridge with a dead-letter queue, CloudWatch Logs); a DLQ serves only asynchronous calls.
          - id: CKV_AWS_117
            comment: No VPC resources to reach; steps fetch https sources from the internet, which a VPC would need a NAT for.
          - id: CKV_AWS_173
            comment: The variables hold resource names only, no secret; Lambda encrypts them at rest with its AWS managed key.
"#;

/// template.yaml for this catalog. `root` is the folder template.yaml is written to: Python
/// and Node functions' CodeUri is their folder relative to it.
pub fn template(catalog: &Catalog, root: &Path) -> Result<String, CatalogError> {
    let mut functions = String::new();
    let mut logs = String::new();
    let mut substitutions = String::new();
    let mut invoke = String::new();
    for b in catalog.bindings() {
        functions.push_str(&function(b, root)?);
        logs.push_str(&log_group(b));
        writeln!(
            substitutions,
            "        {}: !GetAtt {}Function.Arn",
            b.substitution, b.aws_name
        )
        .ok();
        writeln!(
            invoke,
            "        - LambdaInvokePolicy:\n            FunctionName: !Ref {}Function",
            b.aws_name
        )
        .ok();
    }
    if catalog
        .workflow_text()
        .contains(&format!("\"{HTTP_INVOKE}\""))
    {
        invoke.push_str(HTTP_TASK_POLICY);
    }
    // The Rust functions' code is the lambda crate of the checkout `longhaul sam` runs in.
    let rust_code_uri = format!(
        "    CodeUri: {}",
        quoted(&code_uri(Path::new("lambda"), root))
    );
    let mut out = String::new();
    for line in BASE_TEMPLATE.lines() {
        if line == "    CodeUri: lambda" {
            out.push_str(if rust_code_uri == "    CodeUri: \"lambda\"" {
                line
            } else {
                &rust_code_uri
            });
            out.push('\n');
            continue;
        }
        match line.trim().strip_prefix("# @generated ") {
            Some("step-functions") => out.push_str(&functions),
            Some("step-logs") => out.push_str(&logs),
            Some("step-substitutions") => out.push_str(&substitutions),
            Some("step-invoke-policies") => out.push_str(&invoke),
            Some(other) => {
                return Err(CatalogError::new(
                    "catalog/base/template.yaml",
                    format!("unknown marker @generated {other}"),
                ));
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    Ok(out)
}

/// The HTTP Task's resource.
const HTTP_INVOKE: &str = "arn:aws:states:::http:invoke";

/// What the state machine's role needs for HTTP Tasks (AWS's guide): to call endpoints, and
/// to read the EventBridge connections' credentials. Only when a job type has one. The
/// state machine is named, not referenced: its role cannot depend on it.
const HTTP_TASK_POLICY: &str = r#"        # HTTP Tasks (arn:aws:states:::http:invoke) in the job types' workflows.
        - Statement:
            - Effect: Allow
              Action: states:InvokeHTTPEndpoint
              Resource: !Sub "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}:stateMachine:${AWS::StackName}-jobs"
            - Effect: Allow
              Action: events:RetrieveConnectionCredentials
              Resource: !Sub "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:connection/*"
            - Effect: Allow
              Action:
                - secretsmanager:GetSecretValue
                - secretsmanager:DescribeSecret
              Resource: !Sub "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:events!connection/*"
"#;

/// A YAML double-quoted scalar (JSON's string syntax is YAML's).
fn quoted(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

fn function(b: &StepBinding, root: &Path) -> Result<String, CatalogError> {
    let mut f = String::new();
    let description = quoted(&format!("longhaul step: {} {}", b.job_type, b.step));
    writeln!(
        f,
        "  {}Function:\n    Type: AWS::Serverless::Function\n    Metadata:",
        b.aws_name
    )
    .ok();
    f.push_str(FUNCTION_CHECKOV_SKIPS);
    let runtime = b.def.runtime;
    match runtime {
        Runtime::Rust => {
            f.push_str("      BuildMethod: rust-cargolambda\n      BuildProperties:\n        Binary: longhaul-lambda\n");
        }
        Runtime::Command => {
            return Err(CatalogError::new(
                format!("jobtypes/{}/jobtype.json", b.job_type),
                format!(
                    "steps.{}: a command step runs only on one machine (longhaul serve); to deploy to AWS give it a python3.12, python3.13, nodejs22.x or rust runtime",
                    b.step
                ),
            ));
        }
        _ => {}
    }
    writeln!(f, "    Properties:\n      Description: {description}").ok();
    writeln!(
        f,
        "      MemorySize: {}\n      Timeout: {}",
        b.def.memory_mb(),
        b.def.timeout_seconds()
    )
    .ok();
    match runtime {
        Runtime::Rust => {
            writeln!(
                f,
                "      Environment:\n        Variables:\n          LONGHAUL_FUNCTION: {}",
                quoted(b.def.handler.as_deref().unwrap_or_default())
            )
            .ok();
            f.push_str(RUST_STEP_POLICY);
        }
        _ => {
            let dir = b.dir.as_deref().ok_or_else(|| {
                CatalogError::new(
                    format!("jobtypes/{}", b.job_type),
                    "a Python or Node step needs its folder",
                )
            })?;
            writeln!(f, "      Runtime: {}", runtime.as_str()).ok();
            writeln!(f, "      CodeUri: {}", quoted(&code_uri(dir, root))).ok();
            writeln!(
                f,
                "      Handler: {}",
                quoted(b.def.handler.as_deref().unwrap_or_default())
            )
            .ok();
            // Plain text: the progress subscription reads the lines as the step printed them.
            f.push_str("      LoggingConfig:\n        LogFormat: Text\n");
            f.push_str(EXTERNAL_STEP_POLICY);
        }
    }
    f.push('\n');
    Ok(f)
}

/// `dir` relative to `root` when it is under it (as the repository's `jobtypes/NAME`).
fn code_uri(dir: &Path, root: &Path) -> String {
    let abs = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
    let (dir, root) = (abs(dir), abs(root));
    dir.strip_prefix(&root)
        .map(|p| p.to_string_lossy().to_string())
        .unwrap_or_else(|_| dir.to_string_lossy().to_string())
}

/// A Rust step reads and writes its job's item (progress) and its files: it reads its
/// inputs (uploads, or what Register fetched under jobs/) and writes under jobs/ with
/// single PUTs (no multipart upload to abort). lambda/tests/iam_on_moto.rs runs every Rust
/// step with exactly this policy.
const RUST_STEP_POLICY: &str = r#"      Policies:
        - Statement:
            - Effect: Allow
              Action: [dynamodb:GetItem, dynamodb:PutItem]
              Resource: !GetAtt JobsTable.Arn
            - Effect: Allow
              Action: s3:GetObject
              Resource:
                - !Sub "${FilesBucket.Arn}/jobs/*"
                - !Sub "${FilesBucket.Arn}/uploads/*"
            - Effect: Allow
              Action: s3:PutObject
              Resource: !Sub "${FilesBucket.Arn}/jobs/*"
            # Without it S3 answers a missing key with 403, not 404 (Plan: InputNotFound).
            - Effect: Allow
              Action: s3:ListBucket
              Resource: !GetAtt FilesBucket.Arn
              Condition:
                StringLike:
                  s3:prefix: ["jobs/*", "uploads/*"]
"#;

/// A Python or Node step reads its inputs and writes result files under its job's output
/// prefix; its progress goes through its log, so it needs no table access.
const EXTERNAL_STEP_POLICY: &str = r#"      Policies:
        - Statement:
            - Effect: Allow
              Action: s3:GetObject
              Resource:
                - !Sub "${FilesBucket.Arn}/jobs/*"
                - !Sub "${FilesBucket.Arn}/uploads/*"
            - Effect: Allow
              Action: [s3:PutObject, s3:AbortMultipartUpload]
              Resource: !Sub "${FilesBucket.Arn}/jobs/*/output/*"
            - Effect: Allow
              Action: s3:ListBucket
              Resource: !GetAtt FilesBucket.Arn
              Condition:
                StringLike:
                  s3:prefix: ["jobs/*", "uploads/*"]
"#;

fn log_group(b: &StepBinding) -> String {
    let name = &b.aws_name;
    let mut s = format!(
        r#"  {name}FunctionLogs:
    Type: AWS::Logs::LogGroup
    Metadata:
      checkov:
        skip:
          - id: CKV_AWS_158
            comment: Logs hold no secrets (tokens and signatures are never logged); CloudWatch encrypts them at rest.
    Properties:
      LogGroupName: !Sub "/aws/lambda/${{{name}Function}}"
      RetentionInDays: 30

"#
    );
    if b.def.runtime != Runtime::Rust {
        write!(
            s,
            r#"  {name}Progress:
    Type: AWS::Logs::SubscriptionFilter
    DependsOn: ProgressFromLogs
    Properties:
      LogGroupName: !Ref {name}FunctionLogs
      FilterPattern: '"longhaulProgress"'
      DestinationArn: !GetAtt ProgressFunction.Arn

"#
        )
        .ok();
    }
    s
}
