//! SIGKILL `longhaul serve` 20 times at pseudo-random moments while 50 jobs of both types
//! start and run. Clients retry unanswered starts with their idempotency key, as a GPT would.
//! After the last restart every job is terminal with the right result, no job is duplicated,
//! every key still maps to its one job, and no file is orphaned or half written.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use common::Server;
use serde_json::{Value, json};

const JOBS: usize = 50;
const KILLS: usize = 20;

/// A client that survives the server dying under it: errors are `None`, not panics.
struct Client {
    http: reqwest::blocking::Client,
    url: String,
    token: String,
}

impl Client {
    fn new(url: &str, token: &str) -> Client {
        Client {
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            url: url.to_string(),
            token: token.to_string(),
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Option<(u16, Value)> {
        let url = format!("{}{path}", self.url);
        let mut req = match method {
            "POST" => self.http.post(&url),
            _ => self.http.get(&url),
        }
        .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().ok()?;
        let status = resp.status().as_u16();
        let v = resp.json().ok()?;
        Some((status, v))
    }
}

/// The start request of job `i`: even ones demo, odd ones csv-report over the upload.
fn start_body(i: usize, object: &str) -> Value {
    if i.is_multiple_of(2) {
        json!({"type": "demo", "input": {"steps": 3, "stepSeconds": 1}, "idempotencyKey": format!("job-{i}")})
    } else {
        json!({"type": "csv-report", "idempotencyKey": format!("job-{i}"),
            "input": {"source": {"object": object}, "groupBy": ["region"],
                      "metrics": [{"op": "count"}, {"op": "sum", "column": "amount"}], "chunkBytes": 4096}})
    }
}

fn files_under(dir: &Path, out: &mut Vec<String>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p.display().to_string());
        }
    }
}

#[test]
fn twenty_sigkills_lose_nothing_and_duplicate_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let args = ["--max-active-jobs", "100"];
    let mut server = Server::start(&data, &args, None);
    let token = server.token.clone();

    // The CSV: 3 regions, 6,000 rows; the expected sums are computed here.
    let mut csv = String::from("region,amount\n");
    let mut expected: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for i in 0..6000u64 {
        let region = ["north", "south", "east"][(i % 3) as usize];
        csv.push_str(&format!("{region},{i}\n"));
        let e = expected.entry(region).or_default();
        e.0 += 1;
        e.1 += i;
    }
    let c = Client::new(&server.url, &token);
    let (s, up) = c
        .call(
            "POST",
            "/uploads",
            Some(&json!({"name": "sales.csv", "sizeBytes": csv.len(), "mimeType": "text/csv"})),
        )
        .unwrap();
    assert_eq!(s, 200, "{up}");
    let object = up["object"].as_str().unwrap().to_string();
    let put = c
        .http
        .put(up["uploadUrl"].as_str().unwrap())
        .body(csv.clone())
        .send()
        .unwrap();
    assert!(put.status().is_success());

    // Pseudo-random but repeatable moments (xorshift).
    let mut seed: u64 = 0x2026_1125;
    let mut next = move |range: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % range
    };

    let mut ids: BTreeMap<usize, String> = BTreeMap::new();
    let mut next_job = 0;
    for kill in 0..KILLS {
        let c = Client::new(&server.url, &token);
        // Start the next few jobs (and retry any whose start went unanswered) while the
        // clock runs towards the kill; a start cut off by the kill is retried next round.
        let until = Instant::now() + Duration::from_millis(150 + next(600));
        let mut i = 0;
        while Instant::now() < until {
            let pending: Vec<usize> = (0..next_job).filter(|j| !ids.contains_key(j)).collect();
            let j = match pending.first() {
                Some(j) => *j,
                None if next_job < JOBS && i < 4 => {
                    next_job += 1;
                    i += 1;
                    next_job - 1
                }
                None => {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
            };
            if let Some((status, v)) = c.call("POST", "/jobs", Some(&start_body(j, &object))) {
                assert!(status == 202 || status == 200, "start {j}: {status} {v}");
                ids.insert(j, v["jobId"].as_str().unwrap().to_string());
            }
        }
        // One more start in flight when the kill lands: it may be answered, cut off before
        // its job was written, or written and never answered; the retry settles it.
        let in_flight = (next_job < JOBS).then(|| {
            next_job += 1;
            let (j, body) = (next_job - 1, start_body(next_job - 1, &object));
            let c = Client::new(&server.url, &token);
            (
                j,
                std::thread::spawn(move || c.call("POST", "/jobs", Some(&body))),
            )
        });
        std::thread::sleep(Duration::from_millis(next(4)));
        server.kill();
        if let Some((j, h)) = in_flight
            && let Some((status, v)) = h.join().unwrap()
        {
            assert!(status == 202 || status == 200, "start {j}: {status} {v}");
            ids.insert(j, v["jobId"].as_str().unwrap().to_string());
        }
        server = Server::start(&data, &args, Some(&token));
        eprintln!("kill {}: {} jobs started", kill + 1, ids.len());
    }
    // The rest of the jobs, then every start once more: each key must give back its job.
    let c = Client::new(&server.url, &token);
    for j in 0..JOBS {
        let (status, v) = c
            .call("POST", "/jobs", Some(&start_body(j, &object)))
            .expect("the server is up");
        assert!(status == 202 || status == 200, "{v}");
        let id = v["jobId"].as_str().unwrap().to_string();
        if let Some(old) = ids.get(&j) {
            assert_eq!(old, &id, "key job-{j} maps to one job");
        }
        ids.insert(j, id);
    }

    // Every job ends, with the right result.
    for (j, id) in &ids {
        let deadline = Instant::now() + Duration::from_secs(120);
        let job = loop {
            let (_, v) = c
                .call("GET", &format!("/jobs/{id}?waitSeconds=10"), None)
                .expect("getJob");
            if !matches!(v["status"].as_str(), Some("QUEUED" | "RUNNING")) {
                break v;
            }
            assert!(
                Instant::now() < deadline,
                "job {j} ({id}) did not end: {v}\n{}",
                server.log()
            );
        };
        assert_eq!(job["status"], "SUCCEEDED", "job {j}: {job}");
        if j.is_multiple_of(2) {
            assert_eq!(job["result"]["stepsCompleted"], json!(3), "{job}");
        } else {
            assert_eq!(job["result"]["rowsRead"], json!(6000), "{job}");
            let top = job["result"]["top"].as_array().unwrap();
            for row in top {
                let (count, sum) = expected[row["region"].as_str().unwrap()];
                assert_eq!(row["count"], json!(count), "{job}");
                assert_eq!(row["sum_amount"].as_f64(), Some(sum as f64), "{job}");
            }
            let csv_url = job["files"]
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["name"] == "report.csv")
                .unwrap()["url"]
                .as_str()
                .unwrap()
                .to_string();
            let report = c.http.get(&csv_url).send().unwrap().text().unwrap();
            assert_eq!(
                report.lines().count(),
                4,
                "header + 3 groups, whole: {report}"
            );
        }
    }

    // No duplicates: exactly the 50 jobs.
    let mut listed = BTreeSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(cur) => format!("/jobs?limit=100&cursor={cur}"),
            None => "/jobs?limit=100".to_string(),
        };
        let (_, page) = c.call("GET", &path, None).unwrap();
        for j in page["jobs"].as_array().unwrap() {
            listed.insert(j["jobId"].as_str().unwrap().to_string());
        }
        match page["nextCursor"].as_str() {
            Some(n) => cursor = Some(n.to_string()),
            None => break,
        }
    }
    let want: BTreeSet<String> = ids.values().cloned().collect();
    assert_eq!(listed, want, "exactly one job per key, nothing else");

    // No orphaned or half-written file: every file belongs to a job or is the upload, and no
    // temp file is left.
    let mut files = Vec::new();
    files_under(&data.join("blobs"), &mut files);
    for f in &files {
        let owned =
            want.iter().any(|id| f.contains(&format!("/jobs/{id}/"))) || f.contains("/uploads/");
        assert!(owned, "orphaned file {f}");
    }
    let partials: Vec<_> = files.iter().filter(|f| f.contains("/partials/")).collect();
    assert!(partials.is_empty(), "partials left behind: {partials:?}");
}
