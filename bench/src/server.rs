//! The servers a bench loads: `longhaul serve` (the binary next to this one, or the one
//! `--longhaul` names) and the bare peer of `http` (this binary), each a child process on a
//! free loopback port, killed when dropped.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context, Result, bail, ensure};
use tokio::io::{AsyncBufReadExt, BufReader};

/// The repository (bench/'s parent): where `.venv`, `scripts/venv` and the Python peers are.
pub fn repo_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// The `longhaul` binary the benches start as their server.
#[derive(Debug, Clone)]
pub struct Longhaul(pub PathBuf);

impl Longhaul {
    /// `given`, or `longhaul` beside this binary (cargo puts both in the same target dir).
    pub fn find(given: Option<&Path>) -> Result<Longhaul> {
        if let Some(path) = given {
            ensure!(
                path.is_file(),
                "--longhaul {}: no such file (give the path of a built `longhaul` binary)",
                path.display()
            );
            // Absolute: the server runs in a temporary directory.
            let path = std::path::absolute(path)
                .with_context(|| format!("--longhaul {}", path.display()))?;
            return Ok(Longhaul(path));
        }
        let me = std::env::current_exe().context("finding this binary's path")?;
        let beside = me.with_file_name(format!("longhaul{}", std::env::consts::EXE_SUFFIX));
        ensure!(
            beside.is_file(),
            "no `longhaul` binary next to {} (looked for {}): build it in the same profile \
             first (`cargo build --release -p longhaul`) or pass --longhaul PATH",
            me.display(),
            beside.display()
        );
        Ok(Longhaul(beside))
    }
}

/// A server child process and what it printed at start: its URL and the token it created,
/// if it created one. Killed when dropped.
pub struct ServerChild {
    pub process: tokio::process::Child,
    pub url: String,
    pub token: String,
}

/// Starts `longhaul serve` on a free loopback port with its data in `dir/data`, plus `extra`
/// arguments, and waits until it listens.
pub async fn spawn_serve(longhaul: &Longhaul, dir: &Path, extra: &[&str]) -> Result<ServerChild> {
    let data = dir.join("data").to_string_lossy().to_string();
    let mut args = vec!["serve", "--addr", "127.0.0.1:0", "--data-dir", &data];
    args.extend_from_slice(extra);
    spawn_server(&longhaul.0, &args, dir)
        .await
        .with_context(|| format!("starting {} serve", longhaul.0.display()))
}

/// Starts `exe ARGS` in `dir` and waits until it prints where it listens.
pub async fn spawn_server(exe: &Path, args: &[&str], dir: &Path) -> Result<ServerChild> {
    let mut child = tokio::process::Command::new(exe)
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", exe.display()))?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let (mut url, mut token) = (None, String::new());
    while let Some(line) = lines.next_line().await? {
        if line.starts_with("Created a token") {
            token = lines
                .next_line()
                .await?
                .unwrap_or_default()
                .trim()
                .to_string();
        } else if let Some(u) = line.strip_prefix("longhaul listening on ") {
            url = Some(u.trim().to_string());
            break;
        }
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let Some(url) = url else {
        bail!("{} {args:?} did not start", exe.display())
    };
    Ok(ServerChild {
        process: child,
        url,
        token,
    })
}

/// Raises this process's open-files limit to its hard limit (the load generator and the
/// servers, started from here, inherit it): 1,000 connections need more than the usual 1,024
/// descriptors on both ends.
pub fn raise_open_files_limit() {
    // SAFETY: plain getrlimit/setrlimit on this process with a valid struct.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Turns transparent huge pages off for this process, as `longhaul serve` does for itself
/// (so the bare peer's allocator behaves as the server's).
pub fn disable_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with PR_SET_THP_DISABLE takes plain integers and changes only this
    // process's memory policy.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}
