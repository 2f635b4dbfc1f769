//! Task states: the resource, and the timeouts.

use serde_json::{Map, Value};

use super::fields::{Ctx, seconds};
use super::{Kind, LAMBDA_INVOKE, Lang, Seconds, State, TaskSpec};

/// The suffix of a resource that waits for a task token (a callback).
pub(crate) const WAIT_FOR_TASK_TOKEN: &str = ".waitForTaskToken";

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
    let lambda_invoke = base_resource(&resource) == LAMBDA_INVOKE;
    if lambda_invoke {
        let field = match state.lang {
            Lang::JsonPath => "Parameters",
            Lang::Jsonata => "Arguments",
        };
        let has_fn = match m.get(field) {
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
        lambda_invoke,
        timeout,
        heartbeat,
    })))
}
