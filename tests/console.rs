//! The web console in a real browser: `tests/browser/console.mjs` drives Debian's headless
//! Chromium with playwright-core (both installed by scripts/test) against a real
//! `longhaul serve`. Screenshots are kept in `target/artifacts/`.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::Server;

#[test]
fn the_console_works_in_headless_chromium() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "{chromium} is missing: scripts/test installs Debian's chromium (or set CHROMIUM)"
    );
    assert!(
        root.join("tests/browser/node_modules/playwright-core")
            .exists(),
        "playwright-core is missing: run `npm ci --prefix tests/browser` (scripts/test does)"
    );
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[], None);
    let artifacts = root.join("target/artifacts");
    let out = Command::new("node")
        .arg(root.join("tests/browser/console.mjs"))
        .args([&server.url, &server.token])
        .arg(&artifacts)
        .env("CHROMIUM", &chromium)
        .output()
        .expect("node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "console test failed:\n{stdout}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    assert!(stdout.contains("console test passed"), "{stdout}");
    for shot in ["console-job.png", "console-jobs.png", "console-phone.png"] {
        let meta = std::fs::metadata(artifacts.join(shot)).expect("screenshot kept");
        assert!(meta.len() > 10_000, "{shot} is a real picture");
    }
}
