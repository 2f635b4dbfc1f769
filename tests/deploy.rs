//! README's deploy block runs as written: `longhaul sam`, then `sam build --beta-features`
//! (AWS SAM CLI and cargo-lambda from `.venv-sam`, pinned in scripts/requirements-sam.txt) builds
//! every function of the generated template. Only `sam deploy` is left out: it needs an AWS
//! account. `cargo run --release -- ARGS` is stood in for by a `cargo` on PATH that runs this
//! test's longhaul binary for `run --release --` and the real cargo for anything else (SAM's
//! builder calls `cargo lambda build`).
//!
//! The Rust functions build for arm64, as deployed, when the aarch64 standard library is
//! installed (scripts/test installs it with rustup); a machine that cannot get it builds
//! them for x86_64 instead (`--parameter-overrides LambdaArchitecture=x86_64`) and says so.

mod common;

use std::path::Path;
use std::process::Command;

use common::BIN;

const MARKER: &str = "<!-- tests/deploy.rs runs this block";

fn deploy_block() -> String {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let at = readme.find(MARKER).expect("README marks its deploy block");
    let after = &readme[at..];
    let start = after.find("```sh\n").expect("a ```sh block") + 6;
    let end = after[start..].find("```").expect("the block ends") + start;
    after[start..end].to_string()
}

fn has_aarch64_std() -> bool {
    Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("aarch64-unknown-linux-gnu"))
        .unwrap_or(false)
}

#[test]
fn the_deploy_commands_build_every_function() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let venv_bin = root.join(".venv-sam/bin");
    assert!(
        venv_bin.join("sam").is_file() && venv_bin.join("cargo-lambda").is_file(),
        "scripts/venv installs aws-sam-cli and cargo-lambda into .venv-sam"
    );
    let block = deploy_block();
    assert!(block.contains("sam build --beta-features"), "{block}");
    let mut lines: Vec<String> = block
        .lines()
        .filter(|l| !l.trim_start().starts_with("sam deploy"))
        .map(str::to_string)
        .collect();
    let arm64 = has_aarch64_std();
    if !arm64 {
        eprintln!(
            "note: no aarch64 standard library here (rustup target add aarch64-unknown-linux-gnu failed): building for x86_64"
        );
        for l in &mut lines {
            if l.trim_start().starts_with("sam build --beta-features") {
                *l = l.replacen(
                    "sam build --beta-features",
                    "sam build --beta-features --parameter-overrides LambdaArchitecture=x86_64",
                    1,
                );
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let real_cargo = which("cargo");
    let shim = dir.path().join("cargo");
    std::fs::write(
        &shim,
        format!(
            "#!/bin/sh\nif [ \"$1\" = run ] && [ \"$2\" = --release ] && [ \"$3\" = -- ]; then shift 3; exec {BIN:?} \"$@\"; fi\nexec {real_cargo:?} \"$@\"\n"
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).unwrap();
    let script = format!("set -e\n{}\n", lines.join("\n"));
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(root)
        .env(
            "PATH",
            format!(
                "{}:{}:{}",
                dir.path().display(),
                venv_bin.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .env("SAM_CLI_TELEMETRY", "0")
        // Its own target dir: the release build does not wait on this test run's.
        .env("CARGO_TARGET_DIR", root.join("target/sam-build"))
        // How fast it builds, not what: link-time optimization across one codegen unit
        // triples the build and changes nothing this test checks.
        .env("CARGO_PROFILE_RELEASE_LTO", "false")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "16")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{script}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("Build Succeeded"), "{stdout}");
    assert!(
        !String::from_utf8_lossy(
            &std::process::Command::new("git")
                .args(["status", "--porcelain", "template.yaml", "statemachine"])
                .current_dir(root)
                .output()
                .unwrap()
                .stdout
        )
        .contains(".yaml"),
        "longhaul sam changed nothing: the committed files are current"
    );

    // Every function of the template has its artifact; the Rust ones are one bootstrap.
    let built: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(root.join(".aws-sam/build/template.yaml")).unwrap(),
    )
    .unwrap();
    let mut bootstraps = std::collections::BTreeSet::new();
    for (name, r) in built["Resources"].as_mapping().unwrap() {
        if r["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        let name = name.as_str().unwrap();
        let code = root
            .join(".aws-sam/build")
            .join(r["Properties"]["CodeUri"].as_str().unwrap());
        match r["Properties"]["Runtime"].as_str() {
            Some("provided.al2023") | None => {
                let bootstrap = code.join("bootstrap");
                let bytes =
                    std::fs::read(&bootstrap).unwrap_or_else(|_| panic!("{name}: no bootstrap"));
                // ELF e_machine: 0xB7 aarch64, 0x3E x86-64.
                let machine = bytes[18];
                assert_eq!(machine, if arm64 { 0xB7 } else { 0x3E }, "{name}");
                bootstraps.insert(bytes.len());
            }
            Some(runtime) => {
                let handler = r["Properties"]["Handler"].as_str().unwrap();
                let module = handler.rsplit_once('.').unwrap().0;
                let ext = if runtime.starts_with("python") {
                    vec!["py"]
                } else {
                    vec!["mjs", "js", "cjs"]
                };
                assert!(
                    ext.iter()
                        .any(|e| code.join(format!("{module}.{e}")).is_file()),
                    "{name}: {handler} is not in {}",
                    code.display()
                );
            }
        }
    }
    assert_eq!(bootstraps.len(), 1, "one bootstrap for every Rust function");

    python_and_node_job_types_build_for_lambda(root, &venv_bin);
}

/// A user's Python and Node types deploy from their folders: the template `longhaul sam`
/// makes with `--job-types examples` builds too (its Rust part is the build above's, so this
/// runs after it, not beside it).
fn python_and_node_job_types_build_for_lambda(root: &Path, venv_bin: &Path) {
    let out = tempfile::tempdir().unwrap();
    let generated = Command::new(BIN)
        .args(["sam", "--job-types", "examples", "--out"])
        .arg(out.path())
        .current_dir(root)
        .output()
        .unwrap();
    assert!(
        generated.status.success(),
        "{}",
        String::from_utf8_lossy(&generated.stderr)
    );
    let template = out.path().join("template.yaml");
    // The generated template with Python and Node functions is as clean as the committed one.
    let lint = Command::new(root.join("scripts/lint-template"))
        .arg(&template)
        .current_dir(root)
        .output()
        .unwrap();
    assert!(
        lint.status.success(),
        "{}{}",
        String::from_utf8_lossy(&lint.stdout),
        String::from_utf8_lossy(&lint.stderr)
    );
    let mut args = vec!["build", "--beta-features", "--template"];
    let template_arg = template.to_str().unwrap().to_string();
    args.push(&template_arg);
    let build_dir = out.path().join("build").to_str().unwrap().to_string();
    args.extend(["--build-dir", &build_dir]);
    if !has_aarch64_std() {
        args.extend(["--parameter-overrides", "LambdaArchitecture=x86_64"]);
    }
    let run = Command::new(venv_bin.join("sam"))
        .args(&args)
        .current_dir(root)
        .env(
            "PATH",
            format!(
                "{}:{}",
                venv_bin.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .env("SAM_CLI_TELEMETRY", "0")
        .env("CARGO_PROFILE_RELEASE_OPT_LEVEL", "s")
        .env("CARGO_TARGET_DIR", root.join("target/sam-build"))
        .env("CARGO_PROFILE_RELEASE_LTO", "false")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "16")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    // Each function's artifact (functions with the same code share one) holds its handler.
    let built: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(out.path().join("build/template.yaml")).unwrap(),
    )
    .unwrap();
    for (function, file) in [
        ("WordTallyTallyFunction", "tally.py"),
        ("WordTallyReportFunction", "longhaul_files.py"),
        ("TableReportRenderFunction", "render.mjs"),
    ] {
        let code = built["Resources"][function]["Properties"]["CodeUri"]
            .as_str()
            .unwrap_or_else(|| panic!("{function} is in the built template\n{stdout}"));
        let dir = out.path().join("build").join(code);
        assert!(
            dir.join(file).is_file(),
            "{function}: {file} is in {}",
            dir.display()
        );
    }
}

fn which(program: &str) -> std::path::PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|p| p.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{program} is not on PATH"))
}
