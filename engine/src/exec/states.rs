//! The states that do no work of their own: Pass's result, Fail's error and cause,
//! Choice's rule, and Wait's wake-up (checkpointed at the top level, so a restart does not
//! wait again from the start).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{At, Failure, Flow, Run, from_apply, query_error, runtime, saved_variables};
use crate::choice;
use crate::jsonata::QueryError;
use crate::model::{ChoiceRule, Lang, State, StrSource, Test, WaitFor};
use crate::store::Cursor;
use crate::vars::Vars;

impl Run {
    /// A Pass state's result: `Result`, else `Parameters` applied, else its effective input
    /// (JSONata: none; its Output decides).
    pub(super) fn pass_result(
        &self,
        state: &State,
        result: Option<&Value>,
        effective: &Value,
        ctx: &(dyn Fn() -> Value + Sync),
        vars: &Vars<'_>,
    ) -> Result<Option<Value>, Failure> {
        Ok(match (state.lang, result, &state.parameters) {
            (Lang::Jsonata, _, _) => None,
            (_, Some(r), _) => Some(r.clone()),
            (_, None, Some(t)) => Some(
                t.apply(effective, &ctx(), vars)
                    .map_err(|e| from_apply(e, "Parameters"))?,
            ),
            (_, None, None) => Some(effective.clone()),
        })
    }

    /// A Fail state's Error or Cause (`what`): fixed, from a path, an intrinsic or an
    /// expression; none is "".
    pub(super) fn fail_field(
        &self,
        source: Option<&StrSource>,
        what: &str,
        raw: &Value,
        ctx: &(dyn Fn() -> Value + Sync),
        vars: &Vars<'_>,
    ) -> Result<String, Failure> {
        Ok(match source {
            None => String::new(),
            Some(StrSource::Fixed(x)) => x.clone(),
            Some(StrSource::Path(p)) => match self.pick(p, raw, ctx, vars) {
                Some(Value::String(x)) => x,
                Some(other) => {
                    return Err(runtime(format!("{what} {p} is not a string: {other}")));
                }
                None => return Err(runtime(format!("{what} {p} matched nothing"))),
            },
            Some(StrSource::Call(c)) => match crate::intrinsics::eval(c, raw, &ctx(), vars) {
                Ok(Value::String(x)) => x,
                Ok(other) => {
                    return Err(runtime(format!("{what} returned {other}, not a string")));
                }
                Err(m) => return Err(Failure::new("States.IntrinsicFailure", m)),
            },
            Some(StrSource::Expr(e)) => match e.eval(&self.env(raw, None, None, ctx, vars), what) {
                Ok(Value::String(x)) => x,
                Ok(other) => {
                    return Err(query_error(format!(
                        "The JSONata expression '{}' specified for the field '{what}' returned {other}, not a string",
                        e.text
                    )));
                }
                Err(QueryError(m)) => return Err(query_error(m)),
            },
        })
    }

    /// A Choice state's way on: the first rule that matches (with its Assign and Output),
    /// else Default, else `States.NoChoiceMatched`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn choose<'s>(
        &self,
        at: &At<'s>,
        choices: &'s [ChoiceRule],
        default: Option<&'s String>,
        raw: &Value,
        effective: &Value,
        flow: Flow<'s>,
        vars: &Vars<'_>,
    ) -> Result<Flow<'s>, Failure> {
        let state = at.state;
        let ctx = || self.context(&state.name, at.entered, 0, at.item);
        for rule in choices {
            let hit = match &rule.test {
                Test::Path(r) => choice::eval(r, effective, vars).map_err(runtime)?,
                Test::Condition(t) => {
                    match t.eval(&self.env(raw, None, None, &ctx, vars), "Condition") {
                        Ok(Value::Bool(b)) => b,
                        Ok(other) => {
                            return Err(query_error(format!(
                                "the Condition of state '{}' returned {other}, not a boolean",
                                state.name
                            )));
                        }
                        Err(QueryError(m)) => return Err(query_error(m)),
                    }
                }
            };
            if hit {
                return Ok(Flow {
                    next: Some(&rule.next),
                    assign: rule.assign.as_ref(),
                    output: rule.output.as_ref(),
                });
            }
        }
        match default {
            Some(d) => Ok(Flow {
                next: Some(d),
                ..flow
            }),
            None => Err(Failure::new(
                "States.NoChoiceMatched",
                format!(
                    "no choice rule of state '{}' matched and it has no Default",
                    state.name
                ),
            )),
        }
    }

    /// A Wait state's sleep: until its wake-up time (`resumed`: the one checkpointed before
    /// a restart); a top-level Wait that sleeps checkpoints that time first.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn wait(
        &self,
        at: &At<'_>,
        w: &WaitFor,
        raw: &Value,
        effective: &Value,
        top: bool,
        resumed: Option<DateTime<Utc>>,
        vars: &Vars<'_>,
    ) -> Result<(), Failure> {
        let state = at.state;
        let ctx = || self.context(&state.name, at.entered, 0, at.item);
        let until = match resumed {
            Some(t) => t,
            None => self.wake_up(at, w, raw, effective, &ctx, vars)?,
        };
        // AWS's limit on a Wait: 2^31 seconds from now.
        if until - Utc::now() > chrono::Duration::seconds(i64::from(i32::MAX)) {
            return Err(runtime(format!(
                "the Wait state '{}' would wait until {until}: the delay is too long (at most 2^31 s)",
                state.name
            )));
        }
        if top && resumed.is_none() && until > Utc::now() {
            // Checkpoint the wake-up time: a restart resumes the same Wait, not a new
            // one. A Wait that does not sleep needs none (it acts on nothing).
            self.checkpoint(&Cursor {
                state: state.name.clone(),
                input: raw.clone(),
                wait_until: Some(until),
                variables: saved_variables(vars),
                callback: None,
            })
            .await?;
        }
        let left = (until - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        if !left.is_zero() {
            tokio::time::sleep(left).await;
        }
        Ok(())
    }

    /// When a Wait state wakes.
    fn wake_up(
        &self,
        at: &At<'_>,
        w: &WaitFor,
        raw: &Value,
        effective: &Value,
        ctx: &(dyn Fn() -> Value + Sync),
        vars: &Vars<'_>,
    ) -> Result<DateTime<Utc>, Failure> {
        let seconds = |v: &Value, what: &str| match v.as_u64() {
            Some(s) => Ok(at.entered + chrono::Duration::seconds(s.min(i64::MAX as u64) as i64)),
            None => Err(format!("{what} must be a non-negative integer, got {v}")),
        };
        let parse_time = |v: &Value| {
            v.as_str()
                .and_then(choice::parse_timestamp)
                .map(|t| t.with_timezone(&Utc))
        };
        let env = || self.env(raw, None, None, ctx, vars);
        Ok(match w {
            WaitFor::Seconds(s) => at.entered + chrono::Duration::seconds(*s as i64),
            WaitFor::Timestamp(t) => *t,
            WaitFor::SecondsPath(p) => match self.pick(p, effective, ctx, vars) {
                Some(v) => seconds(&v, &format!("SecondsPath {p}")).map_err(runtime)?,
                None => return Err(runtime(format!("SecondsPath {p} matched nothing"))),
            },
            WaitFor::TimestampPath(p) => self
                .pick(p, effective, ctx, vars)
                .as_ref()
                .and_then(parse_time)
                .ok_or_else(|| {
                    runtime(format!(
                        "TimestampPath {p} must point to an RFC 3339 timestamp"
                    ))
                })?,
            WaitFor::SecondsExpr(e) => {
                let v = e
                    .eval(&env(), "Seconds")
                    .map_err(|QueryError(m)| query_error(m))?;
                seconds(&v, "Seconds").map_err(query_error)?
            }
            WaitFor::TimestampExpr(e) => {
                let v = e
                    .eval(&env(), "Timestamp")
                    .map_err(|QueryError(m)| query_error(m))?;
                parse_time(&v).ok_or_else(|| {
                    query_error(format!(
                        "The Timestamp field cannot be parsed as an ISO-8601 extended offset date-time format string: {}",
                        v.as_str().map_or_else(|| v.to_string(), str::to_string)
                    ))
                })?
            }
        })
    }
}
