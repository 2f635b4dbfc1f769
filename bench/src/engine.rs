//! `longhaul-bench engine` times the embedded engine on
//! the workloads of the benchmark issue — a 1,000-item Map of Pass chains, and thousands of
//! concurrent 5-state executions — in memory and with SQLite checkpoints, and prints
//! min/median/max over several runs (the machine is noisy: compare ratios from one run).

use futures::StreamExt;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use async_trait::async_trait;
use clap::Args;
use longhaul_engine::{
    Engine, ExecutionStatus, ExecutionStore, MemoryExecutionStore, SqliteExecutionStore,
    StateMachine, TaskContext, TaskFailure, TaskInvoker,
};
use serde_json::{Value, json};

#[derive(Debug, Clone, Args)]
pub struct EngineBench {
    /// Runs of each workload (min/median/max are reported).
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Items of the Map workload.
    #[arg(long, default_value_t = 1000)]
    pub items: usize,
    /// Pass states per chain.
    #[arg(long, default_value_t = 5)]
    pub chain: usize,
    /// Concurrent executions of the second workload.
    #[arg(long, default_value_t = 10_000)]
    pub executions: usize,
    /// Map executions per run, one after another: one takes about 10 ms in memory, too
    /// short to time on a noisy machine, so a run times this many in a row.
    #[arg(long, default_value_t = 20)]
    pub map_repeats: usize,
    /// Concurrent executions given to moto's executor (the peer) in the second workload;
    /// 0 skips the peer. Fewer than ours: moto runs about 500 transitions/s.
    #[arg(long, default_value_t = 1000)]
    pub moto_executions: usize,
}

/// The peer: moto's Step Functions executor running the same definitions (bench/moto_sfn.py,
/// with moto from `.venv`, installed by scripts/venv).
fn moto_peer(b: &EngineBench) -> Result<Value> {
    let root = crate::server::repo_root();
    let status = std::process::Command::new(root.join("scripts/venv"))
        .status()
        .context("installing the peers into .venv (scripts/venv)")?;
    anyhow::ensure!(status.success(), "scripts/venv failed");
    let out = std::process::Command::new(root.join(".venv/bin/python"))
        .arg("-c")
        .arg(include_str!("../moto_sfn.py"))
        .args([b.items, b.chain, b.moto_executions, b.runs.max(1)].map(|n| n.to_string()))
        .stderr(std::process::Stdio::null())
        .output()
        .context("running moto's executor")?;
    anyhow::ensure!(out.status.success(), "moto's executor failed");
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn median(v: &Value) -> f64 {
    v["median"].as_f64().unwrap_or(0.0)
}

struct NoTasks;

#[async_trait]
impl TaskInvoker for NoTasks {
    async fn invoke(&self, r: &str, _: Value, _: TaskContext) -> Result<Value, TaskFailure> {
        Err(TaskFailure::new(
            "States.TaskFailed",
            format!("no task {r} in a benchmark"),
        ))
    }
}

fn chain(n: usize) -> Value {
    let mut states = serde_json::Map::new();
    for i in 0..n {
        let s = if i + 1 < n {
            json!({"Type": "Pass", "Next": format!("P{}", i + 1)})
        } else {
            json!({"Type": "Pass", "End": true})
        };
        states.insert(format!("P{i}"), s);
    }
    json!({"StartAt": "P0", "States": states})
}

fn parse(def: &Value) -> Result<StateMachine> {
    StateMachine::parse(&def.to_string(), &BTreeMap::new()).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Transitions per second of one run: each batch of executions runs to its end before the
/// next starts; `transitions` is the total over all batches.
async fn run_once(
    store: Arc<dyn ExecutionStore>,
    machine: StateMachine,
    batches: Vec<Vec<Value>>,
    transitions: usize,
) -> Result<f64> {
    let engine = Engine::new(store, Arc::new(NoTasks));
    let sm = engine.create_state_machine("bench", machine).await?;
    let t0 = Instant::now();
    for inputs in batches {
        // Started the way many clients would: up to 256 starts in flight (each is durable
        // when it returns, so sequential starts would measure one commit per start, not the
        // engine).
        let (engine_ref, sm_ref) = (&engine, &sm);
        let arns: Vec<String> = futures::stream::iter(inputs)
            .map(|input| async move {
                engine_ref
                    .start_execution(sm_ref, None, input)
                    .await
                    .map(|d| d.execution_arn)
            })
            .buffer_unordered(256)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
        for a in &arns {
            let d = engine.wait_for_completion(a).await?;
            anyhow::ensure!(
                d.status == ExecutionStatus::Succeeded,
                "{a}: {:?}",
                d.status
            );
        }
    }
    Ok(transitions as f64 / t0.elapsed().as_secs_f64())
}

fn stats(mut xs: Vec<f64>) -> Value {
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let med = xs.get(xs.len() / 2).copied().unwrap_or(0.0);
    json!({
        "min": xs.first().copied().unwrap_or(0.0).round(),
        "median": med.round(),
        "max": xs.last().copied().unwrap_or(0.0).round(),
    })
}

/// The workloads' state machines and inputs.
struct Workloads {
    map: StateMachine,
    single: StateMachine,
    map_input: Value,
    map_repeats: usize,
    map_transitions: usize,
    many_transitions: usize,
}

impl Workloads {
    fn new(b: &EngineBench) -> Result<Workloads> {
        let map_def = json!({"StartAt": "M", "States": {"M": {"Type": "Map", "ItemsPath": "$.xs",
            "ItemProcessor": chain(b.chain), "End": true}}});
        let map_repeats = b.map_repeats.max(1);
        Ok(Workloads {
            map: parse(&map_def)?,
            single: parse(&chain(b.chain))?,
            map_input: json!({"xs": (0..b.items).collect::<Vec<_>>()}),
            map_repeats,
            map_transitions: (b.items * b.chain + 1) * map_repeats,
            many_transitions: b.executions * b.chain,
        })
    }

    /// One run of the Map workload.
    async fn map_run(&self, store: Arc<dyn ExecutionStore>) -> Result<f64> {
        run_once(
            store,
            self.map.clone(),
            vec![vec![self.map_input.clone()]; self.map_repeats],
            self.map_transitions,
        )
        .await
    }

    /// One run of the concurrent executions workload.
    async fn concurrent_run(
        &self,
        store: Arc<dyn ExecutionStore>,
        executions: usize,
    ) -> Result<f64> {
        let inputs = (0..executions).map(|i| json!({"i": i})).collect();
        run_once(
            store,
            self.single.clone(),
            vec![inputs],
            self.many_transitions,
        )
        .await
    }
}

/// Both workloads, `runs` times, in memory and with SQLite checkpoints: figures by store.
async fn measure(b: &EngineBench, w: &Workloads) -> Result<serde_json::Map<String, Value>> {
    let dir = tempfile::tempdir().context("a temp dir for the SQLite store")?;
    let mut results = serde_json::Map::new();
    // Not counted: the first run in a fresh process pays for the allocator's first pages
    // (measured: the first in-memory Map run at about half the rate of the next ones).
    w.map_run(Arc::new(MemoryExecutionStore::new())).await?;
    for (name, durable) in [("in_memory", false), ("sqlite_checkpoints", true)] {
        let (mut a, mut c) = (Vec::new(), Vec::new());
        for run in 0..b.runs.max(1) {
            let store = |tag: &str| -> Result<Arc<dyn ExecutionStore>> {
                Ok(if durable {
                    Arc::new(SqliteExecutionStore::open(
                        &dir.path().join(format!("{tag}-{run}.db")),
                    )?)
                } else {
                    Arc::new(MemoryExecutionStore::new())
                })
            };
            a.push(w.map_run(store("map")?).await?);
            c.push(w.concurrent_run(store("many")?, b.executions).await?);
            eprintln!(
                "run {run} {name}: Map {:.0}/s, concurrent {:.0}/s",
                a[run], c[run]
            );
        }
        results.insert(
            name.to_string(),
            json!({
                "map_of_pass_chains_transitions_per_s": stats(a),
                "concurrent_executions_transitions_per_s": stats(c),
            }),
        );
    }
    Ok(results)
}

/// Adds moto's figures and each store's ratio to them.
fn add_moto(b: &EngineBench, results: &mut serde_json::Map<String, Value>) -> Result<()> {
    let peer = moto_peer(b)?;
    let to_f = |k: &str| -> Vec<f64> {
        peer[k]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_f64).collect())
            .unwrap_or_default()
    };
    let (pm, pc) = (stats(to_f("map")), stats(to_f("concurrent")));
    let mut ratios = serde_json::Map::new();
    for (name, r) in results.iter() {
        let m = median(&r["map_of_pass_chains_transitions_per_s"]) / median(&pm).max(1.0);
        let c = median(&r["concurrent_executions_transitions_per_s"]) / median(&pc).max(1.0);
        ratios.insert(
            name.clone(),
            json!({"map_of_pass_chains": (m * 10.0).round() / 10.0, "concurrent_executions": (c * 10.0).round() / 10.0}),
        );
    }
    results.insert(
        "moto_executor".into(),
        json!({
            "map_of_pass_chains_transitions_per_s": pm,
            "concurrent_executions_transitions_per_s": pc,
            "concurrent_executions": b.moto_executions,
        }),
    );
    results.insert("times_moto_median".into(), Value::Object(ratios));
    Ok(())
}

pub async fn run(b: EngineBench) -> Result<i32> {
    let w = Workloads::new(&b)?;
    let mut results = measure(&b, &w).await?;
    if b.moto_executions > 0 {
        add_moto(&b, &mut results)?;
    }
    let report = json!({
        "workloads": {
            "map_of_pass_chains": format!("one execution: a Map of {} items, each a chain of {} Pass states ({} transitions); {} such executions one after another per run", b.items, b.chain, b.items * b.chain + 1, w.map_repeats),
            "concurrent_executions": format!("{} executions of a {}-Pass chain started at once ({} transitions)", b.executions, b.chain, w.many_transitions),
        },
        "runs": b.runs,
        "results": results,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(0)
}
