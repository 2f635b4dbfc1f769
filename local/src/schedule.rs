//! Scheduled jobs for `longhaul serve`, in EventBridge Scheduler's expression syntax:
//! `rate(10 minutes)`, `cron(0 6 * * ? *)` and `at(2026-12-01T06:00:00)`, all in UTC.
//!
//! Each run is started through the JobService with the idempotency key
//! `schedule:<name>:<due time>`, so a run is started at most once however often the server
//! restarts. At start, the latest due time missed while the server was down (but not one
//! before the schedule was first seen) runs once, never several times — as a flexible
//! window does on AWS. Rate schedules are anchored at the Unix epoch (every 10 minutes means
//! :00, :10, …), so due times need no stored state; the first-seen times live in
//! `<data-dir>/schedules.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Timelike, Utc};
use longhaul_jobs::service::{JobService, ServiceError, StartJobRequest};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A schedule expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expression {
    /// Every period, anchored at the Unix epoch.
    Rate(Duration),
    Cron(Box<Cron>),
    /// Once.
    At(DateTime<Utc>),
}

/// An EventBridge cron: minutes hours day-of-month month day-of-week year, one of the two
/// day fields `?`.
#[derive(Debug, Clone, PartialEq)]
pub struct Cron {
    minutes: Vec<bool>,
    hours: Vec<bool>,
    /// None: `?`.
    days_of_month: Option<Vec<bool>>,
    months: Vec<bool>,
    /// 1 = Sunday … 7 = Saturday; None: `?`.
    days_of_week: Option<Vec<bool>>,
    /// 1970..=2199, as an offset from 1970.
    years: Vec<bool>,
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// Parses one cron field into a set over `min..=max` (`names` map to `min`, `min+1`, …).
fn field(text: &str, what: &str, min: u32, max: u32, names: &[&str]) -> Result<Vec<bool>, String> {
    let mut set = vec![false; (max - min + 1) as usize];
    let value = |s: &str| -> Result<u32, String> {
        if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
            return Ok(min + i as u32);
        }
        let n: u32 = s
            .parse()
            .map_err(|_| format!("{what}: {s:?} is not a number"))?;
        if n < min || n > max {
            return Err(format!("{what}: {n} is outside {min}-{max}"));
        }
        Ok(n)
    };
    for part in text.split(',') {
        if part.contains(['L', 'W', '#']) && !names.iter().any(|n| n.eq_ignore_ascii_case(part)) {
            return Err(format!(
                "{what}: {part:?} (L, W and #) is not supported by the local scheduler"
            ));
        }
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s
                    .parse()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("{what}: step {s:?} must be a positive number"))?;
                (r, step)
            }
            None => (part, 1),
        };
        let (lo, hi) = if range == "*" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            let (a, b) = (value(a)?, value(b)?);
            if a > b {
                return Err(format!("{what}: range {range:?} runs backwards"));
            }
            (a, b)
        } else {
            let a = value(range)?;
            // `5/15`: from 5 to the end in steps of 15.
            (a, if part.contains('/') { max } else { a })
        };
        let mut v = lo;
        while v <= hi {
            set[(v - min) as usize] = true;
            v += step;
        }
    }
    Ok(set)
}

impl FromStr for Cron {
    type Err = String;

    fn from_str(s: &str) -> Result<Cron, String> {
        let f: Vec<&str> = s.split_whitespace().collect();
        if f.len() != 6 {
            return Err(format!(
                "cron needs 6 fields (minutes hours day-of-month month day-of-week year), got {}",
                f.len()
            ));
        }
        let (dom_q, dow_q) = (f[2] == "?", f[4] == "?");
        if dom_q == dow_q {
            return Err(
                "cron: exactly one of day-of-month and day-of-week must be `?`".to_string(),
            );
        }
        Ok(Cron {
            minutes: field(f[0], "minutes", 0, 59, &[])?,
            hours: field(f[1], "hours", 0, 23, &[])?,
            days_of_month: if dom_q {
                None
            } else {
                Some(field(f[2], "day-of-month", 1, 31, &[])?)
            },
            months: field(f[3], "month", 1, 12, &MONTHS)?,
            days_of_week: if dow_q {
                None
            } else {
                Some(field(f[4], "day-of-week", 1, 7, &DAYS)?)
            },
            years: field(f[5], "year", 1970, 2199, &[])?,
        })
    }
}

impl Cron {
    fn day_matches(&self, d: NaiveDate) -> bool {
        let year_ok = (1970..=2199).contains(&d.year()) && self.years[(d.year() - 1970) as usize];
        let month_ok = self.months[d.month0() as usize];
        let day_ok = match (&self.days_of_month, &self.days_of_week) {
            (Some(dom), _) => dom[d.day0() as usize],
            (None, Some(dow)) => dow[d.weekday().num_days_from_sunday() as usize],
            (None, None) => true,
        };
        year_ok && month_ok && day_ok
    }

    /// The first time strictly after `t`.
    fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let start = t.with_second(0)?.with_nanosecond(0)? + Duration::minutes(1);
        let mut day = start.date_naive();
        let last = NaiveDate::from_ymd_opt(2199, 12, 31)?;
        while day <= last {
            if self.day_matches(day) {
                for h in (0..24).filter(|h| self.hours[*h as usize]) {
                    for m in (0..60).filter(|m| self.minutes[*m as usize]) {
                        let at = Utc.from_utc_datetime(&day.and_hms_opt(h, m, 0)?);
                        if at >= start {
                            return Some(at);
                        }
                    }
                }
            }
            day = day.succ_opt()?;
        }
        None
    }
}

impl FromStr for Expression {
    type Err = String;

    fn from_str(s: &str) -> Result<Expression, String> {
        let s = s.trim();
        let inner = |prefix: &str| {
            s.strip_prefix(prefix)
                .and_then(|r| r.strip_suffix(')'))
                .map(str::trim)
        };
        if let Some(r) = inner("rate(") {
            let (n, unit) = r
                .split_once(' ')
                .ok_or_else(|| format!("rate({r}): expected `rate(VALUE UNIT)`"))?;
            let n: i64 = n
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("rate({r}): {n:?} is not a positive whole number"))?;
            let one = match unit.trim() {
                "minute" | "minutes" => Duration::minutes(1),
                "hour" | "hours" => Duration::hours(1),
                "day" | "days" => Duration::days(1),
                other => {
                    return Err(format!(
                        "rate({r}): unit {other:?} must be minute(s), hour(s) or day(s)"
                    ));
                }
            };
            return Ok(Expression::Rate(one * n as i32));
        }
        if let Some(r) = inner("cron(") {
            return Ok(Expression::Cron(Box::new(r.parse()?)));
        }
        if let Some(r) = inner("at(") {
            let t = chrono::NaiveDateTime::parse_from_str(r, "%Y-%m-%dT%H:%M:%S")
                .map_err(|e| format!("at({r}): expected yyyy-mm-ddThh:mm:ss ({e})"))?;
            return Ok(Expression::At(Utc.from_utc_datetime(&t)));
        }
        Err(format!(
            "{s:?} is not a schedule expression: use rate(...), cron(...) or at(...)"
        ))
    }
}

impl Expression {
    /// The first due time strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Expression::Rate(p) => {
                let p = p.num_seconds().max(1);
                let n = t.timestamp().div_euclid(p) + 1;
                DateTime::from_timestamp(n * p, 0)
            }
            Expression::Cron(c) => c.next_after(t),
            Expression::At(at) => (*at > t).then_some(*at),
        }
    }

    /// The latest due time in `(after, until]`, if any.
    pub fn latest_in(&self, after: DateTime<Utc>, until: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Expression::Rate(p) => {
                let p = p.num_seconds().max(1);
                let last = DateTime::from_timestamp(until.timestamp().div_euclid(p) * p, 0)?;
                (last > after).then_some(last)
            }
            Expression::At(at) => (*at > after && *at <= until).then_some(*at),
            Expression::Cron(c) => {
                let mut found = None;
                let mut t = after;
                while let Some(next) = c.next_after(t) {
                    if next > until {
                        break;
                    }
                    found = Some(next);
                    t = next;
                }
                found
            }
        }
    }
}

/// What a scheduled run starts: the job's type, input and the owner it runs as.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduledJob {
    #[serde(rename = "type")]
    pub job_type: String,
    #[serde(default)]
    pub input: Value,
    pub owner: String,
}

/// One schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub name: String,
    pub expression: Expression,
    pub expression_text: String,
    pub job: ScheduledJob,
}

/// A schedules file entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleEntry {
    name: String,
    expression: String,
    job: ScheduledJob,
}

impl Schedule {
    pub fn new(name: &str, expression: &str, job: ScheduledJob) -> Result<Schedule, String> {
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(format!(
                "schedule name {name:?}: 1 to 64 letters, digits, '-' or '_'"
            ));
        }
        let expr = expression
            .parse()
            .map_err(|e| format!("schedule {name}: {e}"))?;
        if job.owner.trim().is_empty() {
            return Err(format!("schedule {name}: the job needs an owner"));
        }
        Ok(Schedule {
            name: name.to_string(),
            expression: expr,
            expression_text: expression.to_string(),
            job,
        })
    }

    /// `NAME=EXPRESSION=@JOB.json`, the `--schedule` flag.
    pub fn from_flag(flag: &str) -> Result<Schedule, String> {
        let (name, rest) = flag
            .split_once('=')
            .ok_or_else(|| format!("--schedule {flag:?}: expected NAME=EXPRESSION=@JOB.json"))?;
        let (expr, file) = rest
            .rsplit_once("=@")
            .ok_or_else(|| format!("--schedule {flag:?}: expected NAME=EXPRESSION=@JOB.json"))?;
        let text = std::fs::read_to_string(file)
            .map_err(|e| format!("--schedule {name}: reading {file}: {e}"))?;
        let job: ScheduledJob = serde_json::from_str(&text).map_err(|e| {
            format!("--schedule {name}: {file} is not a job spec {{type, input, owner}}: {e}")
        })?;
        Schedule::new(name, expr, job)
    }

    /// A JSON file: `[{"name", "expression", "job": {"type", "input", "owner"}}, ...]`.
    pub fn from_file(path: &Path) -> Result<Vec<Schedule>, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("schedules file {}: {e}", path.display()))?;
        let entries: Vec<ScheduleEntry> = serde_json::from_str(&text)
            .map_err(|e| format!("schedules file {}: {e}", path.display()))?;
        entries
            .into_iter()
            .map(|e| Schedule::new(&e.name, &e.expression, e.job))
            .collect()
    }

    fn request(&self, due: DateTime<Utc>) -> StartJobRequest {
        StartJobRequest {
            job_type: self.job.job_type.clone(),
            input: self.job.input.clone(),
            idempotency_key: Some(format!(
                "schedule:{}:{}",
                self.name,
                due.format("%Y-%m-%dT%H:%M:%SZ")
            )),
            openai_file_id_refs: None,
        }
    }
}

/// When each schedule was first seen (`<data-dir>/schedules.json`): due times before it
/// were not missed, the schedule did not exist yet.
fn first_seen(
    path: &Path,
    names: &[String],
    now: DateTime<Utc>,
) -> BTreeMap<String, DateTime<Utc>> {
    let mut seen: BTreeMap<String, DateTime<Utc>> = std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let mut changed = false;
    for n in names {
        seen.entry(n.clone()).or_insert_with(|| {
            changed = true;
            now
        });
    }
    if changed {
        let tmp = path.with_extension("json.tmp");
        let ok = serde_json::to_vec_pretty(&seen)
            .ok()
            .and_then(|b| std::fs::write(&tmp, b).ok())
            .and_then(|_| std::fs::rename(&tmp, path).ok());
        if ok.is_none() {
            tracing::warn!(path = %path.display(), "could not record when schedules were first seen");
        }
    }
    seen
}

/// Checks every schedule's job against the service's job types (at start, before serving).
pub fn check(schedules: &[Schedule], service: &JobService) -> Result<(), String> {
    let mut names = std::collections::BTreeSet::new();
    for s in schedules {
        if !names.insert(&s.name) {
            return Err(format!("schedule {}: the name is used twice", s.name));
        }
        service
            .validate_input(&s.job.job_type, &s.job.input)
            .map_err(|e| format!("schedule {}: {e}", s.name))?;
    }
    Ok(())
}

async fn start_run(service: &JobService, s: &Schedule, due: DateTime<Utc>) {
    match service.start(&s.job.owner, s.request(due)).await {
        Ok((job, true)) => {
            tracing::info!(schedule = %s.name, due = %due, job_id = %job.job_id, "scheduled run started")
        }
        Ok((job, false)) => {
            tracing::debug!(schedule = %s.name, due = %due, job_id = %job.job_id, "scheduled run had already started")
        }
        Err(ServiceError::Conflict(m)) => {
            tracing::warn!(schedule = %s.name, due = %due, "the job spec changed after this run started: {m}")
        }
        Err(e) => {
            tracing::warn!(schedule = %s.name, due = %due, error = %e, "scheduled run not started")
        }
    }
}

/// Runs the schedules until the returned task is aborted.
pub fn spawn(
    service: Arc<JobService>,
    schedules: Vec<Schedule>,
    data_dir: PathBuf,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let now = Utc::now();
        let names: Vec<String> = schedules.iter().map(|s| s.name.clone()).collect();
        let seen = first_seen(&data_dir.join("schedules.json"), &names, now);
        let mut tasks = Vec::new();
        for s in schedules {
            let service = service.clone();
            let since = seen.get(&s.name).copied().unwrap_or(now);
            tasks.push(tokio::spawn(async move {
                // A run missed while the server was down: the latest one, once.
                if let Some(due) = s.expression.latest_in(since, Utc::now()) {
                    start_run(&service, &s, due).await;
                }
                let mut after = Utc::now();
                while let Some(due) = s.expression.next_after(after) {
                    let wait = (due - Utc::now()).to_std().unwrap_or_default();
                    tokio::time::sleep(wait).await;
                    start_run(&service, &s, due).await;
                    after = due;
                }
                tracing::info!(schedule = %s.name, "no more due times");
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn rates_are_anchored_at_the_epoch() {
        let e: Expression = "rate(10 minutes)".parse().unwrap();
        assert_eq!(
            e.next_after(t("2026-11-25T10:03:00Z")),
            Some(t("2026-11-25T10:10:00Z"))
        );
        assert_eq!(
            e.next_after(t("2026-11-25T10:10:00Z")),
            Some(t("2026-11-25T10:20:00Z"))
        );
        assert_eq!(
            e.latest_in(t("2026-11-25T09:00:00Z"), t("2026-11-25T10:03:00Z")),
            Some(t("2026-11-25T10:00:00Z"))
        );
        assert_eq!(
            e.latest_in(t("2026-11-25T10:00:00Z"), t("2026-11-25T10:03:00Z")),
            None
        );
        let d: Expression = "rate(1 day)".parse().unwrap();
        assert_eq!(
            d.next_after(t("2026-11-25T10:03:00Z")),
            Some(t("2026-11-26T00:00:00Z"))
        );
    }

    #[test]
    fn crons_follow_eventbridge_fields() {
        let daily: Expression = "cron(0 6 * * ? *)".parse().unwrap();
        assert_eq!(
            daily.next_after(t("2026-11-25T05:59:59Z")),
            Some(t("2026-11-25T06:00:00Z"))
        );
        assert_eq!(
            daily.next_after(t("2026-11-25T06:00:00Z")),
            Some(t("2026-11-26T06:00:00Z"))
        );
        // Weekdays at 8:30 (MON-FRI): 2026-11-28 is a Saturday.
        let weekdays: Expression = "cron(30 8 ? * MON-FRI *)".parse().unwrap();
        assert_eq!(
            weekdays.next_after(t("2026-11-27T09:00:00Z")),
            Some(t("2026-11-30T08:30:00Z"))
        );
        // Every 15 minutes from :05; the first of the month; a list of months.
        let q: Expression = "cron(5/15 * * * ? *)".parse().unwrap();
        assert_eq!(
            q.next_after(t("2026-11-25T10:21:00Z")),
            Some(t("2026-11-25T10:35:00Z"))
        );
        let m: Expression = "cron(0 0 1 JAN,JUL ? 2027)".parse().unwrap();
        assert_eq!(
            m.next_after(t("2026-11-25T00:00:00Z")),
            Some(t("2027-01-01T00:00:00Z"))
        );
        assert_eq!(m.next_after(t("2027-07-01T00:00:00Z")), None, "only 2027");
        // Missed runs: only the latest counts.
        assert_eq!(
            daily.latest_in(t("2026-11-20T07:00:00Z"), t("2026-11-25T05:00:00Z")),
            Some(t("2026-11-24T06:00:00Z"))
        );
    }

    #[test]
    fn at_runs_once() {
        let e: Expression = "at(2026-12-01T06:00:00)".parse().unwrap();
        assert_eq!(
            e.next_after(t("2026-11-25T00:00:00Z")),
            Some(t("2026-12-01T06:00:00Z"))
        );
        assert_eq!(e.next_after(t("2026-12-01T06:00:00Z")), None);
        assert_eq!(
            e.latest_in(t("2026-11-25T00:00:00Z"), t("2026-12-02T00:00:00Z")),
            Some(t("2026-12-01T06:00:00Z"))
        );
    }

    #[test]
    fn bad_expressions_say_why() {
        for (bad, why) in [
            ("every day", "not a schedule expression"),
            ("rate(0 minutes)", "positive whole number"),
            ("rate(5 weeks)", "minute(s), hour(s) or day(s)"),
            ("rate(5)", "rate(VALUE UNIT)"),
            ("cron(0 6 * * *)", "6 fields"),
            (
                "cron(0 6 * * * *)",
                "exactly one of day-of-month and day-of-week",
            ),
            ("cron(0 25 * * ? *)", "hours: 25 is outside 0-23"),
            ("cron(0 6 L * ? *)", "not supported"),
            ("cron(0 6 ? * 2#1 *)", "not supported"),
            ("cron(0/0 6 * * ? *)", "step"),
            ("cron(0 6 * FOO ? *)", "month"),
            ("at(2026-12-01 06:00)", "yyyy-mm-ddThh:mm:ss"),
        ] {
            let e = bad.parse::<Expression>().unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn flags_and_names_are_checked() {
        let job = ScheduledJob {
            job_type: "demo".into(),
            input: serde_json::json!({"steps": 1}),
            owner: "ops".into(),
        };
        assert!(Schedule::new("nightly", "rate(1 day)", job.clone()).is_ok());
        assert!(
            Schedule::new("bad name", "rate(1 day)", job.clone())
                .unwrap_err()
                .contains("letters")
        );
        let mut no_owner = job.clone();
        no_owner.owner = " ".into();
        assert!(
            Schedule::new("x", "rate(1 day)", no_owner)
                .unwrap_err()
                .contains("owner")
        );
        assert!(
            Schedule::from_flag("nightly")
                .unwrap_err()
                .contains("NAME=EXPRESSION=@JOB.json")
        );
        assert!(
            Schedule::from_flag("n=rate(1 day)=@/nonexistent.json")
                .unwrap_err()
                .contains("reading")
        );
        let s = Schedule::new("nightly", "rate(1 day)", job).unwrap();
        assert_eq!(
            s.request(t("2026-11-25T00:00:00Z"))
                .idempotency_key
                .as_deref(),
            Some("schedule:nightly:2026-11-25T00:00:00Z")
        );
    }
}
