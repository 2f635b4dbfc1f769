//! The bench binary's commands: the ones README names exist, a missing server binary is
//! named in the error, and the engine bench reports its figures.

use std::process::Command;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_longhaul-bench");

#[test]
fn every_bench_readme_names_exists() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let named: Vec<&str> = readme
        .lines()
        .filter_map(|l| l.split("-p longhaul-bench -- ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .collect();
    for sub in ["engine", "http", "csv", "load", "lambda"] {
        assert!(named.contains(&sub), "README runs `{sub}`: {named:?}");
    }
    for sub in named {
        let out = Command::new(BIN).args([sub, "--help"]).output().unwrap();
        assert!(out.status.success(), "longhaul-bench {sub} --help");
    }
}

#[test]
fn a_missing_longhaul_binary_is_named_with_the_way_out() {
    let out = Command::new(BIN)
        .args(["http", "--longhaul", "/nonexistent/longhaul", "--runs", "1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--longhaul /nonexistent/longhaul: no such file"),
        "{err}"
    );
}

#[test]
fn the_engine_benchmark_command_reports_its_figures() {
    let out = Command::new(BIN)
        .args([
            "engine",
            "--runs",
            "1",
            "--items",
            "20",
            "--executions",
            "20",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    for store in ["in_memory", "sqlite_checkpoints"] {
        for w in [
            "map_of_pass_chains_transitions_per_s",
            "concurrent_executions_transitions_per_s",
        ] {
            assert!(
                v["results"][store][w]["median"].as_f64().unwrap() > 0.0,
                "{store} {w}: {v}"
            );
        }
    }
}
