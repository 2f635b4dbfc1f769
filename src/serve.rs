//! `longhaul serve`: the job API on one machine. Wires the local adapters (SQLite jobs,
//! files on disk with signed URLs, the embedded engine running the workflow with the steps
//! in process) to the domain and the HTTP API.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use longhaul_api::{ApiState, Authenticator};
use longhaul_catalog::Catalog;
use longhaul_jobs::{BlobStore, JobService, JobStore, ServiceConfig};
use longhaul_local::http_task::OutboundHttp;
use longhaul_local::orchestrator::{EngineOrchestrator, LocalSteps, check_interpreters};
use longhaul_local::schedule::Schedule;
use longhaul_outbound::OutboundPolicy;
use longhaul_steps::{StepContext, StepRegistry};
use tokio::net::TcpListener;

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "LONGHAUL_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Where jobs (SQLite), files, the signing key and the tokens file live.
    #[arg(long, env = "LONGHAUL_DATA_DIR", default_value = "longhaul-data")]
    pub data_dir: PathBuf,
    /// `tokens:FILE` (lines `TOKEN SUBJECT`), `jwt` (with --jwks, --issuer), or `none`
    /// (loopback only). Default: a tokens file in the data dir, created with one token.
    #[arg(long, env = "LONGHAUL_AUTH")]
    pub auth: Option<String>,
    /// JWKS for `--auth jwt`: a file or an https URL.
    #[arg(long, env = "LONGHAUL_JWKS")]
    pub jwks: Option<String>,
    /// Required `iss` for `--auth jwt`.
    #[arg(long, env = "LONGHAUL_ISSUER")]
    pub issuer: Option<String>,
    /// Required `aud` for `--auth jwt`, if any.
    #[arg(long, env = "LONGHAUL_AUDIENCE")]
    pub audience: Option<String>,
    /// The URL clients reach this server at (used in signed file links and the spec).
    /// Default: http://ADDR.
    #[arg(long, env = "LONGHAUL_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// A folder of job type folders to load besides the built-in ones and ./jobtypes
    /// (repeatable; in the environment, separated by ':').
    #[arg(
        long = "job-types",
        value_name = "DIR",
        env = "LONGHAUL_JOB_TYPES",
        value_delimiter = ':'
    )]
    pub job_types: Vec<PathBuf>,
    /// Workflow definition to run instead of the one composed from the job types.
    #[arg(long, env = "LONGHAUL_DEFINITION")]
    pub definition: Option<PathBuf>,
    /// Queued + running jobs one owner may have.
    #[arg(long, env = "LONGHAUL_MAX_ACTIVE_JOBS", default_value_t = 20)]
    pub max_active_jobs: usize,
    /// Lifetime of signed file links, in seconds.
    #[arg(long, env = "LONGHAUL_FILE_URL_TTL", default_value_t = 900)]
    pub file_url_ttl: u64,
    /// Largest upload, in bytes.
    #[arg(long, env = "LONGHAUL_MAX_UPLOAD_BYTES", default_value_t = 1 << 30)]
    pub max_upload_bytes: u64,
    /// Let URL and file-ref downloads and HTTP Tasks use http and reach loopback/private
    /// addresses. For local testing only: it turns off the protection against server-side
    /// request forgery.
    #[arg(long, env = "LONGHAUL_ALLOW_INSECURE_DOWNLOADS")]
    pub allow_insecure_downloads: bool,
    /// Log format.
    #[arg(long, env = "LONGHAUL_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// A scheduled job, `NAME=EXPRESSION=@JOB.json` (repeatable). EXPRESSION is EventBridge
    /// Scheduler's: rate(10 minutes), cron(0 6 * * ? *), at(2026-12-01T06:00:00), in UTC;
    /// JOB.json is {"type", "input", "owner"}.
    #[arg(long = "schedule", value_name = "NAME=EXPRESSION=@JOB.json")]
    pub schedules: Vec<String>,
    /// A JSON file of schedules: [{"name", "expression", "job": {"type", "input", "owner"}}].
    #[arg(long, env = "LONGHAUL_SCHEDULES")]
    pub schedules_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl ServeArgs {
    /// Defaults for an in-process server (the demo, tests).
    pub fn local(data_dir: &Path) -> ServeArgs {
        ServeArgs {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: data_dir.to_path_buf(),
            auth: None,
            jwks: None,
            issuer: None,
            audience: None,
            public_url: None,
            job_types: Vec::new(),
            definition: None,
            max_active_jobs: 20,
            file_url_ttl: 900,
            max_upload_bytes: 1 << 30,
            allow_insecure_downloads: false,
            log_format: LogFormat::Text,
            schedules: Vec::new(),
            schedules_file: None,
        }
    }
}

/// Raises this process's open-file limit to its hard limit (each long poll or
/// client connection is a socket).
fn raise_open_files_limit() {
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

/// Turns transparent huge pages off for this process. mimalloc asks for them on its
/// arenas, and then every page it takes back from the OS after a purge is a 2 MiB page to
/// zero: 11% of the server's CPU under `bench csv` was the kernel clearing such pages
/// (`clear_page_erms`) for buffers of a few KiB. The server's heap is small, so it loses no
/// TLB reach worth having. (The same as `MIMALLOC_ALLOW_THP=0`, which mimalloc reads at
/// start.)
fn disable_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with PR_SET_THP_DISABLE takes plain integers and changes only this
    // process's memory policy.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

pub fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("LONGHAUL_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,tower_http=info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // A log that cannot be written (disk full) must not take requests down: the default
        // reports the failure with eprintln!, which panics when stderr fails too.
        .log_internal_errors(false);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// A server running in this process.
pub struct RunningServer {
    /// The URL clients reach it at (`--public-url`, else the local address).
    pub base_url: String,
    /// The address it listens on.
    pub local_url: String,
    /// The token created for a new tokens file (printed once), if one was created.
    pub new_token: Option<String>,
    shutdown: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<()>>,
}

impl RunningServer {
    /// Stops accepting, lets requests finish briefly, leaves running executions
    /// checkpointed for the next start.
    pub async fn shutdown(self) -> Result<()> {
        let _ = self.shutdown.send(true);
        self.task.await.context("server task")?
    }

    /// Waits until the server stops (after a signal).
    pub async fn wait(self) -> Result<()> {
        self.task.await.context("server task")?
    }
}

/// Starts the server on `addr` and returns once it accepts connections.
pub async fn start(args: &ServeArgs, stop_on_signal: bool) -> Result<RunningServer> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating the data dir {}", args.data_dir.display()))?;
    warn_if_data_dir_would_be_committed(&args.data_dir);
    let data_dir_lock = lock_data_dir(&args.data_dir)?;
    let listener = TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("listening on {}", args.addr))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    let base_url = args
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"))
        .trim_end_matches('/')
        .to_string();

    let (auth, new_token) = build_auth(args, &addr).await?;
    let registry = StepRegistry::all();
    let catalog = load_catalog(&args.job_types, &registry)?;
    let (store, blobs) = open_stores(args, &base_url)?;
    let workflow = start_workflow(args, &catalog, registry, &store, &blobs).await?;
    let config = ServiceConfig {
        max_active_jobs_per_owner: args.max_active_jobs,
        file_url_ttl: Duration::from_secs(args.file_url_ttl.clamp(1, 7 * 24 * 3600)),
        max_upload_bytes: args.max_upload_bytes,
        allow_insecure_downloads: args.allow_insecure_downloads,
        ..ServiceConfig::default()
    };
    let service = Arc::new(JobService::new(
        store.clone(),
        blobs.clone(),
        Arc::new(workflow.orchestrator),
        catalog.job_types().clone(),
        config,
    ));
    // Checked before anything is served: a bad schedule stops the start.
    let schedules = load_schedules(args, &service)?;
    recover(&workflow.engine, &store, &service).await?;
    let scheduler = (!schedules.is_empty()).then(|| {
        tracing::info!(count = schedules.len(), "schedules running");
        longhaul_local::schedule::spawn(service.clone(), schedules, args.data_dir.clone())
    });
    let timeouts = spawn_job_timeouts(service.clone());

    let app = longhaul_api::router(ApiState {
        public_url: Some(base_url.clone()),
        service,
        auth,
    })
    .merge(longhaul_local::files_router(blobs))
    .merge(longhaul_local::console::console_router(
        workflow.definition_text,
    ));

    let engine = workflow.engine;
    let tracker = workflow.tracker;
    let cleanup = async move {
        if let Some(s) = scheduler {
            s.abort();
        }
        timeouts.abort();
        engine.shutdown().await;
        tracker.abort();
        drop(data_dir_lock);
    };
    let (shutdown, task) = serve_until_stopped(listener, app, stop_on_signal, cleanup);
    Ok(RunningServer {
        base_url,
        local_url: format!("http://{addr}"),
        new_token,
        shutdown,
        task,
    })
}

/// The job store and the file store in the data dir.
fn open_stores(
    args: &ServeArgs,
    base_url: &str,
) -> Result<(
    Arc<longhaul_local::SqliteJobStore>,
    Arc<longhaul_local::FsBlobStore>,
)> {
    let store = Arc::new(
        longhaul_local::SqliteJobStore::open(&args.data_dir.join("jobs.db"))
            .context("opening the job store")?,
    );
    let signer = longhaul_local::UrlSigner::load_or_create(&args.data_dir.join("signing.key"))
        .context("loading the URL signing key")?;
    let blobs = Arc::new(
        longhaul_local::FsBlobStore::open(&args.data_dir.join("blobs"), signer, base_url)
            .context("opening the file store")?,
    );
    // Safe: the lock says no other server writes here; these are a killed process's writes.
    match blobs.remove_unfinished_writes() {
        Ok(0) => {}
        Ok(n) => tracing::info!(files = n, "removed unfinished writes of an earlier run"),
        Err(e) => tracing::warn!(error = %e, "removing unfinished writes of an earlier run"),
    }
    Ok((store, blobs))
}

/// The workflow running in the embedded engine, and what shuts it down.
struct Workflow {
    engine: longhaul_engine::Engine,
    orchestrator: EngineOrchestrator,
    tracker: tokio::task::JoinHandle<()>,
    /// What runs (the console draws it).
    definition_text: String,
}

/// The engine over `engine.db` with the catalog's steps bound, the workflow registered (the
/// composed one, or `--definition`) and the execution tracker running.
async fn start_workflow(
    args: &ServeArgs,
    catalog: &Catalog,
    registry: StepRegistry,
    store: &Arc<longhaul_local::SqliteJobStore>,
    blobs: &Arc<longhaul_local::FsBlobStore>,
) -> Result<Workflow> {
    let step_ctx = StepContext {
        store: store.clone() as Arc<dyn JobStore>,
        blobs: blobs.clone() as Arc<dyn BlobStore>,
        types: Arc::new(catalog.job_types().clone()),
        downloads: longhaul_steps::fetch::DownloadPolicy {
            allow_insecure: args.allow_insecure_downloads,
            max_bytes: args.max_upload_bytes,
        },
        job_retention: ServiceConfig::default().job_retention,
    };
    let steps = Arc::new(LocalSteps::new(catalog, registry, step_ctx.clone()));
    let definition_text = match &args.definition {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("reading the workflow definition {}", path.display()))?,
        None => catalog.workflow_text(),
    };
    let machine = steps
        .load_definition(&definition_text)
        .map_err(anyhow::Error::msg)?;
    let exec_store = Arc::new(
        longhaul_engine::SqliteExecutionStore::open(&args.data_dir.join("engine.db"))
            .context("opening the engine's execution store")?,
    );
    // HTTP Tasks reach what URL sources may reach: one outbound policy.
    let http = Arc::new(OutboundHttp::new(OutboundPolicy {
        allow_insecure: args.allow_insecure_downloads,
    }));
    let orchestrator = EngineOrchestrator::with_steps(exec_store, steps, http, machine)
        .await
        .context("registering the workflow")?;
    Ok(Workflow {
        tracker: orchestrator.spawn_tracker(step_ctx),
        engine: orchestrator.engine().clone(),
        orchestrator,
        definition_text,
    })
}

/// `--schedule` and `--schedules-file`, each checked against the job types.
fn load_schedules(args: &ServeArgs, service: &JobService) -> Result<Vec<Schedule>> {
    let mut schedules = Vec::new();
    for flag in &args.schedules {
        schedules.push(Schedule::from_flag(flag).map_err(anyhow::Error::msg)?);
    }
    if let Some(file) = &args.schedules_file {
        schedules.extend(Schedule::from_file(file).map_err(anyhow::Error::msg)?);
    }
    longhaul_local::schedule::check(&schedules, service).map_err(anyhow::Error::msg)?;
    Ok(schedules)
}

/// How often jobs past their type's `timeoutSeconds` are looked for.
const JOB_TIMEOUT_CHECK: Duration = Duration::from_secs(5);

/// Ends the jobs that ran past their type's `timeoutSeconds` (JobService::time_out_overdue)
/// every few seconds.
fn spawn_job_timeouts(service: Arc<JobService>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(JOB_TIMEOUT_CHECK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = service.time_out_overdue(chrono::Utc::now()).await {
                tracing::warn!(error = %e, "looking for jobs past their time limit");
            }
        }
    })
}

/// After a stop: executions that were running go on where they were, and jobs accepted but
/// never started (a crash between the two) start now.
async fn recover(
    engine: &longhaul_engine::Engine,
    store: &longhaul_local::SqliteJobStore,
    service: &JobService,
) -> Result<()> {
    let resumed = engine.resume_all().await.context("resuming executions")?;
    if resumed > 0 {
        tracing::info!(resumed, "resumed running executions");
    }
    let queued = store
        .list_queued_without_execution()
        .await
        .context("listing unstarted jobs")?;
    for job in queued {
        if let Err(e) = service.resume_queued(job).await {
            tracing::warn!(error = %e, "could not start a queued job");
        }
    }
    Ok(())
}

/// Serves `app` until a signal (when `stop_on_signal`) or the returned sender says stop;
/// then gives requests a moment and runs `cleanup`.
fn serve_until_stopped(
    listener: TcpListener,
    app: axum::Router,
    stop_on_signal: bool,
    cleanup: impl std::future::Future<Output = ()> + Send + 'static,
) -> (
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<Result<()>>,
) {
    let (shutdown_tx, mut shutdown_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(async move {
        let stop = async move {
            if stop_on_signal {
                tokio::select! {
                    _ = shutdown_signal() => {}
                    _ = shutdown_rx.changed() => {}
                }
            } else {
                let _ = shutdown_rx.changed().await;
            }
            tracing::info!("shutting down");
        };
        let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel::<()>();
        let server = axum::serve(listener, app).with_graceful_shutdown(async move {
            stop.await;
            let _ = stopped_tx.send(());
        });
        let server = tokio::spawn(async move { server.await });
        // Long polls may hold a request for up to 25 s; give requests a moment, not that.
        let _ = stopped_rx.await;
        if tokio::time::timeout(Duration::from_secs(3), server)
            .await
            .is_err()
        {
            tracing::info!("closing requests still open");
        }
        cleanup.await;
        Ok(())
    });
    (shutdown_tx, task)
}

/// The job types this server runs: the built-in ones, `./jobtypes/*` and each `--job-types`
/// folder, checked. A bad folder stops the start, naming the file and the reason.
pub fn load_catalog(extra: &[PathBuf], registry: &StepRegistry) -> Result<Catalog> {
    let mut dirs = Vec::new();
    let here = PathBuf::from("jobtypes");
    if here.is_dir() {
        dirs.push(here);
    }
    dirs.extend(extra.iter().cloned());
    let folders = longhaul_catalog::load_all(&dirs).context("loading the job types")?;
    let catalog = Catalog::new(folders, &registry.rust_code()).context("checking the job types")?;
    check_interpreters(&catalog).map_err(anyhow::Error::msg)?;
    Ok(catalog)
}

/// A warning when the data dir sits in a git work tree and is not ignored there: it holds
/// the tokens file and the link-signing key, which one `git add .` would publish.
pub fn warn_if_data_dir_would_be_committed(data_dir: &Path) {
    let Ok(dir) = data_dir.canonicalize() else {
        return;
    };
    let Some(root) = dir.ancestors().find(|a| a.join(".git").exists()) else {
        return;
    };
    let ignored = std::process::Command::new("git")
        .arg("-C")
        .arg(root)
        .args(["check-ignore", "-q"])
        .arg(&dir)
        .status();
    // 1: not ignored; 0: ignored; anything else (no git): say nothing we cannot back.
    if matches!(ignored, Ok(s) if s.code() == Some(1)) {
        eprintln!(
            "warning: the data dir {} is inside the git work tree {} and not ignored: it holds your tokens and the link-signing key; add it to {}/.gitignore",
            data_dir.display(),
            root.display(),
            root.display()
        );
    }
}

/// One server per data dir: two would run every execution twice. The lock is the kernel's
/// (released when the process dies, even by SIGKILL), on `<data-dir>/serve.lock`.
fn lock_data_dir(data_dir: &Path) -> Result<std::fs::File> {
    let path = data_dir.join("serve.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another longhaul serve is using the data dir {}; stop it or pass another --data-dir",
            data_dir.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
}

async fn build_auth(
    args: &ServeArgs,
    addr: &SocketAddr,
) -> Result<(Arc<dyn Authenticator>, Option<String>)> {
    match args.auth.as_deref() {
        None => {
            let path = args.data_dir.join("tokens");
            if path.exists() {
                let auth = longhaul_api::TokensFileAuth::load(&path)
                    .with_context(|| format!("loading {}", path.display()))?;
                Ok((Arc::new(auth), None))
            } else {
                let (auth, token) = longhaul_api::TokensFileAuth::create_default(&path)
                    .with_context(|| format!("creating {}", path.display()))?;
                Ok((Arc::new(auth), Some(token)))
            }
        }
        Some("none") => {
            longhaul_api::check_no_auth_allowed(addr).map_err(anyhow::Error::msg)?;
            Ok((
                Arc::new(longhaul_api::NoAuth {
                    subject: "local".into(),
                }),
                None,
            ))
        }
        Some("jwt") => {
            let (Some(jwks), Some(issuer)) = (&args.jwks, &args.issuer) else {
                bail!("--auth jwt needs --jwks FILE_OR_URL and --issuer ISS");
            };
            let auth = longhaul_api::JwtAuth::new(jwks, issuer, args.audience.as_deref())
                .await
                .context("setting up JWT auth")?;
            Ok((Arc::new(auth), None))
        }
        Some(other) => match other.strip_prefix("tokens:") {
            Some(file) if !file.is_empty() => {
                let path = PathBuf::from(file);
                let auth = longhaul_api::TokensFileAuth::load(&path)
                    .with_context(|| format!("loading {}", path.display()))?;
                Ok((Arc::new(auth), None))
            }
            _ => bail!("--auth must be tokens:FILE, jwt or none (got {other:?})"),
        },
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// `longhaul serve`.
pub async fn run(args: ServeArgs) -> Result<()> {
    init_logging(args.log_format);
    // A file-size limit (RLIMIT_FSIZE) must fail the write (EFBIG → 503), not kill the server
    // with SIGXFSZ: like a full disk, the server answers "try later" and recovers.
    // SAFETY: setting a signal to SIG_IGN at start, before any thread depends on it.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    // Every long poll holds a socket: allow as many as the hard limit does.
    raise_open_files_limit();
    disable_transparent_huge_pages();
    let server = start(&args, true).await?;
    if let Some(token) = &server.new_token {
        // Printed once, to stdout (not the log): the file keeps it for the CLI.
        println!(
            "Created a token for owner `local` (kept in {}):",
            args.data_dir.join("tokens").display()
        );
        println!("  {token}");
    }
    println!("longhaul listening on {}", server.local_url);
    if server.base_url != server.local_url {
        println!(
            "public URL (signed links, the served spec): {}",
            server.base_url
        );
    }
    tracing::info!(url = %server.base_url, data_dir = %args.data_dir.display(), "serving");
    server.wait().await
}
