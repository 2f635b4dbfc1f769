//! `longhaul new job-type NAME --runtime R`: a working job type folder — its jobtype.json, a
//! one-step workflow, the step's code and a sample input — that `longhaul serve` runs at once
//! (a Rust step after a rebuild), and the next commands.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use longhaul_jobs::types::is_type_name;

#[derive(Debug, Clone, Subcommand)]
pub enum NewCommand {
    /// Write a new job type folder.
    JobType(NewJobTypeArgs),
}

#[derive(Debug, Clone, Args)]
pub struct NewJobTypeArgs {
    /// The type's name: a lowercase letter, then lowercase letters, digits or '-'.
    pub name: String,
    /// The language of its step.
    #[arg(long, value_enum, default_value_t = ScaffoldRuntime::Python312)]
    pub runtime: ScaffoldRuntime,
    /// The folder of job types to write it in (`longhaul serve` loads ./jobtypes).
    #[arg(long, default_value = "jobtypes")]
    pub dir: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScaffoldRuntime {
    #[value(name = "python3.12")]
    Python312,
    #[value(name = "python3.13")]
    Python313,
    #[value(name = "nodejs22.x")]
    Nodejs22,
    #[value(name = "rust")]
    Rust,
}

impl ScaffoldRuntime {
    fn name(self) -> &'static str {
        match self {
            ScaffoldRuntime::Python312 => "python3.12",
            ScaffoldRuntime::Python313 => "python3.13",
            ScaffoldRuntime::Nodejs22 => "nodejs22.x",
            ScaffoldRuntime::Rust => "rust",
        }
    }
}

const PYTHON_STEP: &str = r#""""The one step of job type {name}: a Lambda handler.

The event is the job ({"jobId", "type", "input", "outputUri"}); the return value is the job's
output: {"result": ..., "files": [...]}. Raise an exception to fail the step: its class name
is the error the workflow's Retry and Catch match. Runs the same under `longhaul serve` and
on AWS Lambda.
"""

import base64
import json
import sys
import time


def progress(event, percent, message):
    # One line on stderr: longhaul shows it as the job's progress.
    print(json.dumps({"longhaulProgress": {"jobId": event.get("jobId"), "percent": percent, "message": message}}),
          file=sys.stderr, flush=True)


def handler(event, context):
    text = event["input"]["text"]
    words = text.split()
    progress(event, 50, f"counted {len(words)} words")
    time.sleep(event["input"].get("seconds", 0))
    summary = f"{len(words)} words, {len(text)} characters\n"
    return {
        "result": {"words": len(words), "characters": len(text)},
        "files": [{"name": "summary.txt", "mimeType": "text/plain",
                   "contentBase64": base64.b64encode(summary.encode()).decode()}],
    }
"#;

const NODE_STEP: &str = r#"// The one step of job type {name}: a Lambda handler (Node.js 22, ES module).
// The event is the job ({jobId, type, input, outputUri}); the return value is the job's
// output: {result, files}. A thrown error fails the step: its name (TypeError, or your
// class's `name`) is the error the workflow's Retry and Catch match.

const progress = (event, percent, message) =>
  // One line on stderr: longhaul shows it as the job's progress.
  process.stderr.write(JSON.stringify({ longhaulProgress: { jobId: event.jobId, percent, message } }) + "\n");

export const handler = async (event) => {
  const text = event.input.text;
  const words = text.split(/\s+/).filter(Boolean);
  progress(event, 50, `counted ${words.length} words`);
  await new Promise((done) => setTimeout(done, (event.input.seconds ?? 0) * 1000));
  const summary = `${words.length} words, ${text.length} characters\n`;
  return {
    result: { words: words.length, characters: text.length },
    files: [{ name: "summary.txt", mimeType: "text/plain", contentBase64: Buffer.from(summary).toString("base64") }],
  };
};
"#;

/// Compiled as it is by longhaul-steps' tests (the placeholders sit in string literals).
const RUST_STEP: &str = include_str!("scaffold/rust_step.rs");

/// The files of the new type: (name, content).
fn files(name: &str, runtime: ScaffoldRuntime) -> Vec<(&'static str, String)> {
    let (handler, code_file, code) = match runtime {
        ScaffoldRuntime::Python312 | ScaffoldRuntime::Python313 => {
            ("step.handler".to_string(), "step.py", PYTHON_STEP)
        }
        ScaffoldRuntime::Nodejs22 => ("step.handler".to_string(), "step.mjs", NODE_STEP),
        ScaffoldRuntime::Rust => (format!("{name}-count"), "steps.rs", RUST_STEP),
    };
    let jobtype = serde_json::json!({
        "description": format!("{name}: counts the words of a text (a new job type: describe it here in at most 300 characters; listJobTypes shows it to the model)."),
        "inputSchema": {
            "type": "object",
            "additionalProperties": false,
            "required": ["text"],
            "properties": {
                "text": {"type": "string", "minLength": 1, "maxLength": 100000, "description": "The text to count."},
                "seconds": {"type": "integer", "minimum": 0, "maximum": 600, "default": 0, "description": "Seconds to take, to see a long job."}
            }
        },
        "timeoutSeconds": 900,
        "steps": {"Count": {"runtime": runtime.name(), "handler": handler, "timeoutSeconds": 660, "memoryMB": 256}}
    });
    let workflow = serde_json::json!({
        "Comment": format!("{name}: one step. Add states here; a Task runs a step of jobtype.json by naming it as its Resource."),
        "StartAt": "Count",
        "States": {"Count": {"Type": "Task", "Resource": "${Count}", "End": true}}
    });
    let pretty = |v: serde_json::Value| {
        let mut s = serde_json::to_string_pretty(&v).unwrap_or_default();
        s.push('\n');
        s
    };
    let mut out = vec![
        ("jobtype.json", pretty(jobtype)),
        ("workflow.asl.json", pretty(workflow)),
        (code_file, code.replace("{name}", name)),
        (
            "sample-input.json",
            "{\"text\": \"the quick brown fox jumps over the lazy dog\", \"seconds\": 2}\n".into(),
        ),
    ];
    if runtime == ScaffoldRuntime::Nodejs22 {
        out.push((
            "package.json",
            pretty(serde_json::json!({"name": name, "version": "1.0.0", "private": true, "type": "module"})),
        ));
    }
    out
}

/// `longhaul new job-type`. Returns the exit code.
pub fn run(cmd: &NewCommand) -> Result<i32> {
    let NewCommand::JobType(args) = cmd;
    if !is_type_name(&args.name) {
        bail!(
            "{:?} is not a job type name: a lowercase letter, then lowercase letters, digits or '-', at most 40 characters",
            args.name
        );
    }
    let folder = args.dir.join(&args.name);
    if folder.exists() {
        bail!(
            "{} already exists; pick another name or remove it",
            folder.display()
        );
    }
    if args.runtime == ScaffoldRuntime::Rust && !is_longhaul_checkout(&args.dir) {
        bail!(
            "a Rust step is compiled into longhaul: run this in longhaul's repository (its jobtypes/ folder), or pick --runtime python3.12 or nodejs22.x"
        );
    }
    std::fs::create_dir_all(&folder).with_context(|| format!("creating {}", folder.display()))?;
    for (file, text) in files(&args.name, args.runtime) {
        let path = folder.join(file);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    let shown = folder.display();
    println!(
        "Created job type {} in {shown}/ ({}).",
        args.name,
        args.runtime.name()
    );
    println!("Next:");
    if args.runtime == ScaffoldRuntime::Rust {
        println!(
            "  cargo run --release -- serve        # rebuilds longhaul with the new step and loads {shown}"
        );
    } else {
        println!(
            "  longhaul serve                      # loads {shown} (restart a running server)"
        );
    }
    println!(
        "  longhaul start {} --input @{shown}/sample-input.json --wait",
        args.name
    );
    println!("  longhaul sam && sam build --beta-features && sam deploy --guided   # to AWS");
    Ok(0)
}

/// `dir` is longhaul's own jobtypes/ (a Rust step must be compiled in).
fn is_longhaul_checkout(dir: &Path) -> bool {
    let root = dir
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let root = if root.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        root
    };
    root.join("steps/build.rs").is_file()
}
