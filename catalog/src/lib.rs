//! longhaul-catalog: the job types as folders.
//!
//! ```text
//! jobtypes/NAME/            NAME: ^[a-z][a-z0-9-]{0,39}$
//!   jobtype.json            description, inputSchema, timeoutSeconds, fileInputs, steps
//!   workflow.asl.json       its states; a Task names a step as "Resource": "${StepName}"
//!   *.py / *.mjs / ...      its steps' code
//! ```
//!
//! This crate loads such folders (the built-in `demo` and `csv-report` are compiled in;
//! `longhaul serve` adds `./jobtypes/*` and every `--job-types DIR`), checks them — a bad
//! folder is an error naming the file and the reason — and from the base workflow and every
//! type makes the one workflow both sides run (`statemachine/job.asl.json`) and the SAM
//! template that deploys it (`template.yaml`, see [`template`]).

mod compose;
pub mod template;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use longhaul_jobs::types::is_type_name;
use longhaul_jobs::{InputCheck, JobType, JobTypeDef, JobTypes, Runtime, StepDef};
use serde_json::Value;

pub use compose::{LAMBDA_SERVICE_ERRORS, pretty};

/// The base workflow: Register, Route, Complete, MarkFailed.
pub const BASE_WORKFLOW: &str = include_str!("../base/job.asl.json");

/// The folder names of job types compiled into longhaul.
pub const BUILTIN: &[(&str, &str, &str)] = &[
    (
        "demo",
        include_str!("../../jobtypes/demo/jobtype.json"),
        include_str!("../../jobtypes/demo/workflow.asl.json"),
    ),
    (
        "csv-report",
        include_str!("../../jobtypes/csv-report/jobtype.json"),
        include_str!("../../jobtypes/csv-report/workflow.asl.json"),
    ),
];

/// The base workflow's own steps: their substitutions and the Rust steps they run.
pub const BASE_STEPS: &[(&str, &str)] = &[
    ("RegisterFunctionArn", "register"),
    ("CompleteFunctionArn", "complete"),
    ("MarkFailedFunctionArn", "mark-failed"),
];

/// A job type folder, or a loading error naming its file.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct CatalogError {
    /// The file (or folder) at fault, as the user would find it.
    pub file: String,
    pub message: String,
}

impl CatalogError {
    fn new(file: impl Into<String>, message: impl Into<String>) -> CatalogError {
        CatalogError {
            file: file.into(),
            message: message.into(),
        }
    }
}

/// A job type as found in its folder.
#[derive(Debug, Clone)]
pub struct JobTypeFolder {
    pub name: String,
    /// The folder on disk; `None` for a type compiled into longhaul.
    pub dir: Option<PathBuf>,
    pub def: JobTypeDef,
    /// Its workflow.asl.json.
    pub workflow: Value,
}

impl JobTypeFolder {
    /// How to name the folder in messages.
    pub fn where_(&self) -> String {
        match &self.dir {
            Some(d) => d.display().to_string(),
            None => format!("jobtypes/{} (built in)", self.name),
        }
    }

    fn file(&self, name: &str) -> String {
        format!("{}/{name}", self.where_())
    }

    /// From the texts of its two files.
    pub fn parse(
        name: &str,
        dir: Option<PathBuf>,
        jobtype_json: &str,
        workflow_json: &str,
    ) -> Result<JobTypeFolder, CatalogError> {
        let where_ = dir
            .as_ref()
            .map_or_else(|| format!("jobtypes/{name}"), |d| d.display().to_string());
        if !is_type_name(name) {
            return Err(CatalogError::new(
                where_,
                format!(
                    "{name:?} is not a job type name: a lowercase letter, then lowercase letters, digits or '-', at most 40 characters"
                ),
            ));
        }
        let def = JobTypeDef::parse(jobtype_json)
            .map_err(|m| CatalogError::new(format!("{where_}/jobtype.json"), m))?;
        let workflow: Value = serde_json::from_str(workflow_json).map_err(|e| {
            CatalogError::new(
                format!("{where_}/workflow.asl.json"),
                format!("not valid JSON: {e}"),
            )
        })?;
        Ok(JobTypeFolder {
            name: name.to_string(),
            dir,
            def,
            workflow,
        })
    }

    /// Reads `dir/jobtype.json` and `dir/workflow.asl.json`; the type is named by the folder.
    pub fn load(dir: &Path) -> Result<JobTypeFolder, CatalogError> {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let read = |file: &str| {
            let path = dir.join(file);
            std::fs::read_to_string(&path).map_err(|e| {
                CatalogError::new(path.display().to_string(), format!("cannot read it: {e}"))
            })
        };
        let def = read("jobtype.json")?;
        let workflow = read("workflow.asl.json")?;
        JobTypeFolder::parse(&name, Some(dir.to_path_buf()), &def, &workflow)
    }
}

/// The types compiled into longhaul (`jobtypes/demo`, `jobtypes/csv-report`).
pub fn builtin_folders() -> Vec<JobTypeFolder> {
    BUILTIN
        .iter()
        .map(|(name, def, wf)| {
            // A test checks that these parse; a failure here is a bug in longhaul's build.
            JobTypeFolder::parse(name, None, def, wf)
                .unwrap_or_else(|e| panic!("built-in job type {name}: {e}"))
        })
        .collect()
}

/// Every job type folder in `dir`: each sub-folder is one (hidden folders and files are
/// skipped). A folder that is not a valid job type is an error.
pub fn load_dir(dir: &Path) -> Result<Vec<JobTypeFolder>, CatalogError> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        CatalogError::new(
            dir.display().to_string(),
            format!("cannot read the folder: {e}"),
        )
    })?;
    let mut paths: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    paths.sort();
    paths.iter().map(|p| JobTypeFolder::load(p)).collect()
}

/// The folders `longhaul serve` runs: the built-in types, then every folder in each of
/// `dirs` (`./jobtypes` first when it exists). A folder named as a built-in type is the
/// built-in's own source (this repository's `jobtypes/demo`) when it is the same; if it
/// differs, the binary is older than the folder and the start stops.
pub fn load_all(dirs: &[PathBuf]) -> Result<Vec<JobTypeFolder>, CatalogError> {
    let mut folders = builtin_folders();
    for dir in dirs {
        for f in load_dir(dir)? {
            match folders.iter().find(|b| b.name == f.name && b.dir.is_none()) {
                Some(b) if b.def == f.def && b.workflow == f.workflow => {}
                Some(_) => {
                    return Err(CatalogError::new(
                        f.where_(),
                        format!(
                            "differs from the built-in job type {:?} compiled into this longhaul: rebuild longhaul (cargo build) to use the folder, or rename it",
                            f.name
                        ),
                    ));
                }
                None => folders.push(f),
            }
        }
    }
    Ok(folders)
}

/// The job types of a `job-types.json` ([`Catalog::job_types_json`]), with their Rust input
/// checks.
pub fn job_types_from_json(
    text: &str,
    input_checks: &BTreeMap<String, Arc<dyn InputCheck>>,
) -> Result<JobTypes, String> {
    let list: Vec<Value> =
        serde_json::from_str(text).map_err(|e| format!("job-types.json: {e}"))?;
    let mut types = Vec::new();
    for mut v in list {
        let name = v
            .as_object_mut()
            .and_then(|m| m.remove("type"))
            .and_then(|t| t.as_str().map(str::to_string))
            .ok_or("job-types.json: an entry without \"type\"")?;
        let def: JobTypeDef =
            serde_json::from_value(v).map_err(|e| format!("job-types.json: {name}: {e}"))?;
        let check = def
            .input_check
            .as_ref()
            .and_then(|c| input_checks.get(c).cloned());
        types.push(
            JobType::from_def(&name, &def, check)
                .map_err(|m| format!("job-types.json: {name}: {m}"))?,
        );
    }
    JobTypes::new(types)
}

/// The Rust code a catalog may name: steps (`"runtime": "rust"`) and input checks.
#[derive(Clone, Default)]
pub struct RustCode {
    pub steps: BTreeSet<String>,
    pub input_checks: BTreeMap<String, Arc<dyn InputCheck>>,
}

/// A step of a job type, bound to its name in the composed workflow.
#[derive(Debug, Clone, PartialEq)]
pub struct StepBinding {
    pub job_type: String,
    /// The step's name in jobtype.json (`"${Plan}"` in the workflow).
    pub step: String,
    /// Its name on AWS: `CsvReportPlan` → function `CsvReportPlanFunction`, substitution
    /// `${CsvReportPlanFunctionArn}` in the composed workflow.
    pub aws_name: String,
    pub substitution: String,
    pub def: StepDef,
    /// The type's folder (where Python, Node and command steps run); `None` for built-ins.
    pub dir: Option<PathBuf>,
}

/// `csv-report` + `Plan` → `CsvReportPlan`.
pub fn aws_name(job_type: &str, step: &str) -> String {
    let mut out = String::new();
    for part in job_type.split('-') {
        let mut chars = part.chars();
        if let Some(c) = chars.next() {
            out.push(c.to_ascii_uppercase());
            out.extend(chars);
        }
    }
    out.extend(step.chars().filter(char::is_ascii_alphanumeric));
    out
}

/// Every job type, checked, and the workflow composed from them.
#[derive(Debug, Clone)]
pub struct Catalog {
    folders: Vec<JobTypeFolder>,
    bindings: Vec<StepBinding>,
    types: JobTypes,
    workflow: Value,
}

impl Catalog {
    /// Checks every folder and composes the workflow. Errors name the file and the reason.
    pub fn new(folders: Vec<JobTypeFolder>, rust: &RustCode) -> Result<Catalog, CatalogError> {
        let mut types = Vec::new();
        let mut bindings = Vec::new();
        let mut per_type = Vec::new();
        for (i, f) in folders.iter().enumerate() {
            if let Some(other) = folders[..i].iter().find(|o| o.name == f.name) {
                return Err(CatalogError::new(
                    f.where_(),
                    format!(
                        "job type {:?} is also defined by {}",
                        f.name,
                        other.where_()
                    ),
                ));
            }
            let check = match &f.def.input_check {
                Some(name) => Some(rust.input_checks.get(name).cloned().ok_or_else(|| {
                    CatalogError::new(
                        f.file("jobtype.json"),
                        format!(
                            "inputCheck: no Rust input check named {name:?} is compiled into longhaul (known: {})",
                            rust.input_checks.keys().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    )
                })?),
                None => None,
            };
            let t = JobType::from_def(&f.name, &f.def, check)
                .map_err(|m| CatalogError::new(f.file("jobtype.json"), m))?;
            types.push(t);
            let b = check_steps(f, rust)?;
            check_workflow(f, &b)?;
            bindings.extend(b.iter().cloned());
            per_type.push((f, b));
        }
        check_aws_names(&bindings)?;
        let base: Value = serde_json::from_str(BASE_WORKFLOW)
            .map_err(|e| CatalogError::new("catalog/base/job.asl.json", e.to_string()))?;
        let workflow = compose::compose(&base, &per_type)
            .map_err(|m| CatalogError::new("the composed workflow", m))?;
        let catalog = Catalog {
            types: JobTypes::new(types).map_err(|m| CatalogError::new("jobtypes", m))?,
            folders,
            bindings,
            workflow,
        };
        catalog.parse_workflow().map_err(|m| {
            CatalogError::new(
                "the composed workflow",
                format!("{m}\n(each type's workflow was valid alone: this is a clash between types or with the base states)"),
            )
        })?;
        Ok(catalog)
    }

    pub fn folders(&self) -> &[JobTypeFolder] {
        &self.folders
    }

    pub fn job_types(&self) -> &JobTypes {
        &self.types
    }

    /// Every step of every type, bound to its substitution.
    pub fn bindings(&self) -> &[StepBinding] {
        &self.bindings
    }

    /// The composed workflow (`statemachine/job.asl.json`).
    pub fn workflow(&self) -> &Value {
        &self.workflow
    }

    pub fn workflow_text(&self) -> String {
        pretty(&self.workflow)
    }

    /// Every `${Name}` of the composed workflow, bound to `value(name)`.
    pub fn substitutions(&self, value: impl Fn(&str) -> String) -> BTreeMap<String, String> {
        BASE_STEPS
            .iter()
            .map(|(s, _)| s.to_string())
            .chain(self.bindings.iter().map(|b| b.substitution.clone()))
            .map(|s| {
                let v = value(&s);
                (s, v)
            })
            .collect()
    }

    /// `statemachine/job-types.json`: every type's jobtype.json, for the Lambda functions
    /// (which have no folders to read; the bootstrap embeds this file).
    pub fn job_types_json(&self) -> String {
        let list: Vec<Value> = self
            .folders
            .iter()
            .map(|f| {
                let mut v = serde_json::to_value(&f.def).unwrap_or(Value::Null);
                if let Some(m) = v.as_object_mut() {
                    m.insert("type".into(), Value::from(f.name.as_str()));
                }
                v
            })
            .collect();
        let mut text = serde_json::to_string_pretty(&list).unwrap_or_default();
        text.push('\n');
        text
    }

    /// The composed workflow parsed by the engine, with placeholder ARNs.
    fn parse_workflow(&self) -> Result<longhaul_engine::StateMachine, String> {
        let subst =
            self.substitutions(|s| format!("arn:aws:lambda:us-east-1:000000000000:function:{s}"));
        longhaul_engine::StateMachine::parse(&self.workflow.to_string(), &subst)
            .map_err(|e| e.to_string())
    }
}

/// The type's steps: each declared one is used by the workflow and runnable; bound to its
/// AWS name.
fn check_steps(f: &JobTypeFolder, rust: &RustCode) -> Result<Vec<StepBinding>, CatalogError> {
    let mut out = Vec::new();
    for (step, def) in &f.def.steps {
        if def.runtime == Runtime::Rust {
            let handler = def.handler.as_deref().unwrap_or_default();
            if !rust.steps.contains(handler) {
                return Err(CatalogError::new(
                    f.file("jobtype.json"),
                    format!(
                        "steps.{step}: no Rust step named {handler:?} is compiled into longhaul (a Rust step lives in jobtypes/NAME/steps.rs; rebuild after adding one)"
                    ),
                ));
            }
        } else if let Some(dir) = &f.dir {
            check_code_exists(dir, step, def)
                .map_err(|m| CatalogError::new(f.file("jobtype.json"), m))?;
        }
        let aws_name = aws_name(&f.name, step);
        out.push(StepBinding {
            job_type: f.name.clone(),
            step: step.clone(),
            substitution: format!("{aws_name}FunctionArn"),
            aws_name,
            def: def.clone(),
            dir: f.dir.clone(),
        });
    }
    Ok(out)
}

/// The handler's file is in the folder (Python `a.b.handler` → `a/b.py`; Node `render.handler`
/// → `render.mjs`, `.js` or `.cjs`); a command's program exists if it is a path.
fn check_code_exists(dir: &Path, step: &str, def: &StepDef) -> Result<(), String> {
    match (def.runtime, &def.handler, &def.command) {
        (r, Some(h), _) if r.is_python() => {
            let module = h.rsplit_once('.').map_or("", |(m, _)| m).replace('.', "/");
            let file = dir.join(format!("{module}.py"));
            if !file.is_file() {
                return Err(format!(
                    "steps.{step}: handler {h:?} needs {}, which does not exist",
                    file.display()
                ));
            }
        }
        (Runtime::Nodejs22, Some(h), _) => {
            let module = h.rsplit_once('.').map_or("", |(m, _)| m);
            if !["mjs", "js", "cjs"]
                .iter()
                .any(|ext| dir.join(format!("{module}.{ext}")).is_file())
            {
                return Err(format!(
                    "steps.{step}: handler {h:?} needs {module}.mjs (or .js, .cjs) in {}, which does not exist",
                    dir.display()
                ));
            }
        }
        (Runtime::Command, _, Some(cmd)) => {
            let program = &cmd[0];
            if program.contains('/') && !dir.join(program).is_file() {
                return Err(format!(
                    "steps.{step}: command {program:?} does not exist in {}",
                    dir.display()
                ));
            }
        }
        _ => {}
    }
    Ok(())
}

/// The type's workflow alone: a state machine whose `${...}` are exactly its steps, valid
/// ASL with those bound.
fn check_workflow(f: &JobTypeFolder, bindings: &[StepBinding]) -> Result<(), CatalogError> {
    let file = f.file("workflow.asl.json");
    let mut used = BTreeSet::new();
    collect_substitutions(&f.workflow, &mut used);
    for name in &used {
        if !f.def.steps.contains_key(name) {
            return Err(CatalogError::new(
                &file,
                format!(
                    "${{{name}}} is not a step of jobtype.json (its steps: {})",
                    f.def.steps.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
    }
    if let Some(unused) = f.def.steps.keys().find(|s| !used.contains(*s)) {
        return Err(CatalogError::new(
            f.file("jobtype.json"),
            format!("steps.{unused}: the workflow never runs it (no Task names \"${{{unused}}}\")"),
        ));
    }
    let subst = bindings
        .iter()
        .map(|b| {
            (
                b.step.clone(),
                format!(
                    "arn:aws:lambda:us-east-1:000000000000:function:{}",
                    b.aws_name
                ),
            )
        })
        .collect();
    longhaul_engine::StateMachine::parse(&f.workflow.to_string(), &subst)
        .map_err(|e| CatalogError::new(&file, e.to_string()))?;
    Ok(())
}

fn collect_substitutions(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::String(s) => {
            let mut rest = s.as_str();
            while let Some(start) = rest.find("${") {
                let after = &rest[start + 2..];
                let Some(end) = after.find('}') else { break };
                out.insert(after[..end].to_string());
                rest = &after[end + 1..];
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_substitutions(x, out)),
        // Comments too: SAM and the engine substitute every `${Name}` of a definition.
        Value::Object(m) => m.values().for_each(|x| collect_substitutions(x, out)),
        _ => {}
    }
}

/// AWS names (function logical ids) are unique.
fn check_aws_names(bindings: &[StepBinding]) -> Result<(), CatalogError> {
    let reserved = [
        "Register",
        "Complete",
        "MarkFailed",
        "TrackStatus",
        "Api",
        "Progress",
    ];
    for (i, b) in bindings.iter().enumerate() {
        if let Some(o) = bindings[..i].iter().find(|o| o.aws_name == b.aws_name) {
            return Err(CatalogError::new(
                format!("jobtypes/{}", b.job_type),
                format!(
                    "step {} and step {} of {} have the same AWS name {}; rename one",
                    b.step, o.step, o.job_type, b.aws_name
                ),
            ));
        }
        if reserved.contains(&b.aws_name.as_str()) {
            return Err(CatalogError::new(
                format!("jobtypes/{}", b.job_type),
                format!(
                    "step {}'s AWS name {} is one of longhaul's own; rename it",
                    b.step, b.aws_name
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
