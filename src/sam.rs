//! `longhaul sam`: writes what AWS deploys from the job type folders — `template.yaml`,
//! `statemachine/job.asl.json` and `statemachine/job-types.json` — from the base and every
//! type (built in, `./jobtypes/*`, each `--job-types DIR`). The committed files are these
//! generated ones; `--check` says whether they are up to date (a test runs it).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use longhaul_steps::StepRegistry;

#[derive(Debug, Clone, Args)]
pub struct SamArgs {
    /// A folder of job type folders besides the built-in ones and ./jobtypes (repeatable).
    #[arg(
        long = "job-types",
        value_name = "DIR",
        env = "LONGHAUL_JOB_TYPES",
        value_delimiter = ':'
    )]
    pub job_types: Vec<PathBuf>,
    /// Where template.yaml and statemachine/ are written.
    #[arg(long, default_value = ".")]
    pub out: PathBuf,
    /// Write nothing; exit 1 if a file differs from what would be written.
    #[arg(long)]
    pub check: bool,
}

/// The generated files: (path under `out`, content).
pub fn generate(args: &SamArgs) -> Result<Vec<(PathBuf, String)>> {
    let catalog = crate::serve::load_catalog(&args.job_types, &StepRegistry::all())?;
    let template = longhaul_catalog::template::template(&catalog, &args.out)
        .context("generating template.yaml")?;
    Ok(vec![
        (PathBuf::from("template.yaml"), template),
        (
            PathBuf::from("statemachine/job.asl.json"),
            catalog.workflow_text(),
        ),
        (
            PathBuf::from("statemachine/job-types.json"),
            catalog.job_types_json(),
        ),
    ])
}

/// `longhaul sam`. Returns the exit code.
pub fn run(args: &SamArgs) -> Result<i32> {
    let files = generate(args)?;
    if args.check {
        let stale: Vec<String> = files
            .iter()
            .filter(|(p, text)| {
                std::fs::read_to_string(args.out.join(p)).ok().as_deref() != Some(text)
            })
            .map(|(p, _)| p.display().to_string())
            .collect();
        if stale.is_empty() {
            println!("up to date: {}", names(&files));
            return Ok(0);
        }
        eprintln!(
            "out of date: {} (run `longhaul sam` and commit the result)",
            stale.join(", ")
        );
        return Ok(1);
    }
    for (p, text) in &files {
        write(&args.out.join(p), text)?;
    }
    println!("wrote {}", names(&files));
    println!("next: sam build --beta-features && sam deploy --guided");
    Ok(0)
}

fn names(files: &[(PathBuf, String)]) -> String {
    files
        .iter()
        .map(|(p, _)| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn write(path: &Path, text: &str) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}
