//! Task states: the resource and its integration pattern, the timeouts, and the fields an
//! HTTP Task's arguments must have.

use serde_json::{Map, Value};

use super::fields::{Ctx, seconds};
use super::{Integration, Kind, LAMBDA_INVOKE, Lang, Seconds, State, TaskSpec};

/// The suffix of a resource that waits for a task token (a callback).
pub(crate) const WAIT_FOR_TASK_TOKEN: &str = ".waitForTaskToken";

/// The prefix of Step Functions' service integrations (`arn:aws:states:::SERVICE:ACTION`).
const SERVICE_INTEGRATION: &str = "arn:aws:states:::";

/// The resource without an integration pattern suffix.
pub(crate) fn base_resource(resource: &str) -> &str {
    resource
        .strip_suffix(WAIT_FOR_TASK_TOKEN)
        .or_else(|| resource.strip_suffix(".sync"))
        .unwrap_or(resource)
}

pub(super) fn parse(m: &Map<String, Value>, state: &State, cx: &mut Ctx) -> Option<Kind> {
    let name = state.name.as_str();
    let resource = match m.get("Resource") {
        Some(Value::String(r)) if !r.is_empty() => r.clone(),
        _ => {
            cx.err(Some(name), "Resource", "a Task needs a Resource (an ARN)");
            String::new()
        }
    };
    let callback = resource.ends_with(WAIT_FOR_TASK_TOKEN);
    let base = base_resource(&resource);
    let integration = match base {
        LAMBDA_INVOKE => Integration::LambdaInvoke,
        crate::http::HTTP_INVOKE => Integration::Http,
        _ => Integration::Direct,
    };
    if callback && !base.starts_with(SERVICE_INTEGRATION) {
        cx.err(
            Some(name),
            "Resource",
            format!(
                "{WAIT_FOR_TASK_TOKEN} needs a service integration ({SERVICE_INTEGRATION}SERVICE:ACTION{WAIT_FOR_TASK_TOKEN}, e.g. {LAMBDA_INVOKE}{WAIT_FOR_TASK_TOKEN} with Parameters.FunctionName): {resource:?} is not one"
            ),
        );
    }
    let args_field = match state.lang {
        Lang::JsonPath => "Parameters",
        Lang::Jsonata => "Arguments",
    };
    match integration {
        Integration::LambdaInvoke => check_function_name(m.get(args_field), args_field, name, cx),
        Integration::Http => {
            if resource != crate::http::HTTP_INVOKE {
                cx.err(
                    Some(name),
                    "Resource",
                    format!(
                        "{} supports only the request-response pattern (no .sync or {WAIT_FOR_TASK_TOKEN})",
                        crate::http::HTTP_INVOKE
                    ),
                );
            }
            for (field, message) in crate::http::check_arguments(m.get(args_field), args_field) {
                cx.err(Some(name), &field, message);
            }
        }
        Integration::Direct => {}
    }
    let limits = (1, 99_999_999);
    let timeout = seconds(m, "TimeoutSeconds", state.lang, name, cx, limits);
    let heartbeat = seconds(m, "HeartbeatSeconds", state.lang, name, cx, limits);
    if let (Seconds::Fixed(t), Seconds::Fixed(h)) = (&timeout, &heartbeat)
        && h >= t
    {
        cx.err(
            Some(name),
            "HeartbeatSeconds",
            "must be less than TimeoutSeconds",
        );
    }
    Some(Kind::Task(Box::new(TaskSpec {
        resource,
        integration,
        callback,
        timeout,
        heartbeat,
    })))
}

/// lambda:invoke names its function in `Parameters.FunctionName` (JSONPath) or
/// `Arguments.FunctionName` (JSONata).
fn check_function_name(args: Option<&Value>, field: &str, name: &str, cx: &mut Ctx) {
    let has_fn = match args {
        Some(Value::Object(p)) => {
            p.contains_key("FunctionName") || p.contains_key("FunctionName.$")
        }
        // A whole-field expression may build FunctionName at run time.
        Some(Value::String(s)) => crate::jsonata::expression_text(s).is_some(),
        _ => false,
    };
    if !has_fn {
        cx.err(
            Some(name),
            field,
            format!("lambda:invoke needs {field}.FunctionName"),
        );
    }
}
