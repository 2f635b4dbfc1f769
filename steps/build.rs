//! Collects the Rust steps of the job type folders: every `jobtypes/NAME/steps.rs` becomes a
//! module of this crate (`NAME` with '-' as '_'), and `register_all` calls each one's
//! `register`. Adding a folder with a `steps.rs` is all it takes; nothing else names it.

use std::fmt::Write as _;
use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let jobtypes = manifest.join("..").join("jobtypes");
    println!("cargo:rerun-if-changed={}", jobtypes.display());
    let mut folders: Vec<(String, PathBuf)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&jobtypes) {
        for entry in entries.flatten() {
            let steps = entry.path().join("steps.rs");
            // A folder added later must be seen too: watch each folder, not only the parent.
            println!("cargo:rerun-if-changed={}", entry.path().display());
            if steps.is_file() {
                let name = entry.file_name().to_string_lossy().to_string();
                folders.push((name, steps));
            }
        }
    }
    folders.sort();
    let mut code = String::new();
    let mut calls = String::new();
    for (name, path) in &folders {
        let module = name.replace('-', "_");
        let path = path.canonicalize().unwrap_or_else(|_| path.clone());
        writeln!(
            code,
            "#[path = {:?}]\npub mod {module};",
            path.display().to_string()
        )
        .expect("write to a String");
        writeln!(calls, "    {module}::register(steps);").expect("write to a String");
    }
    write!(
        code,
        "\n/// Registers every job type folder's Rust steps.\npub fn register_all(steps: &mut crate::StepRegistry) {{\n{calls}}}\n"
    )
    .expect("write to a String");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("jobtypes.rs");
    std::fs::write(&out, code).expect("writing jobtypes.rs");
}
