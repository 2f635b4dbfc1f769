//! Races on a real `longhaul serve`: many identical starts at once, and cancel racing the
//! end of a job. Every promise must hold however the threads interleave.

mod common;

use std::time::{Duration, Instant};

use common::Server;
use serde_json::{Value, json};

#[test]
fn two_hundred_concurrent_starts_with_one_key_make_one_job() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[], None);
    let body = json!({"type": "demo", "input": {"steps": 2, "stepSeconds": 0}, "idempotencyKey": "nightly-2026-11-25"});
    let answers: Vec<(u16, Value)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..200)
            .map(|_| {
                let api = server.client();
                let body = body.clone();
                s.spawn(move || {
                    let r = api.post("/jobs", &body);
                    (r.status, r.body)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let created = answers.iter().filter(|(s, _)| *s == 202).count();
    let replayed = answers.iter().filter(|(s, _)| *s == 200).count();
    assert_eq!(
        (created, replayed),
        (1, 199),
        "one 202, the rest 200: {:?}",
        answers.iter().map(|a| a.0).collect::<Vec<_>>()
    );
    let ids: std::collections::BTreeSet<&str> = answers
        .iter()
        .map(|(_, b)| b["jobId"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 1, "one job: {ids:?}");
    let list = server.client().get("/jobs");
    assert_eq!(
        list.body["jobs"].as_array().unwrap().len(),
        1,
        "{}",
        list.text
    );
}

fn execution_end(api: &common::Api, id: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let h = api.get(&format!("/jobs/{id}/history?limit=1000"));
        if let Some(ev) = h.body["events"].as_array().and_then(|e| {
            e.iter().rev().find_map(|ev| {
                let t = ev["type"].as_str()?;
                matches!(
                    t,
                    "ExecutionSucceeded"
                        | "ExecutionFailed"
                        | "ExecutionAborted"
                        | "ExecutionTimedOut"
                )
                .then(|| t.to_string())
            })
        }) {
            return ev;
        }
        assert!(
            Instant::now() < deadline,
            "execution of {id} did not end: {}",
            h.text
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn cancel_racing_completion_ends_in_exactly_one_consistent_state() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &dir.path().join("data"),
        &["--max-active-jobs", "200"],
        None,
    );
    let api = server.client();
    let (mut cancelled, mut succeeded) = (0, 0);
    for round in 0..100 {
        let r = api.post(
            "/jobs",
            &json!({"type": "demo", "input": {"steps": 1, "stepSeconds": 0}}),
        );
        assert_eq!(r.status, 202, "{}", r.text);
        let id = r.body["jobId"].as_str().unwrap().to_string();
        // Vary the head start so cancel lands before, during and after the one step.
        std::thread::sleep(Duration::from_micros((round % 10) * 300));
        let c = api.post(&format!("/jobs/{id}/cancel"), &json!({}));
        let done = api.get(&format!("/jobs/{id}?waitSeconds=20"));
        let status = done.body["status"].as_str().unwrap_or("").to_string();
        let end = execution_end(&api, &id);
        match c.status {
            200 => {
                assert_eq!(
                    status, "CANCELLED",
                    "round {round}: cancel said yes: {}",
                    done.text
                );
                assert_ne!(
                    end, "ExecutionSucceeded",
                    "round {round}: a cancelled job's execution must not succeed"
                );
                cancelled += 1;
            }
            409 => {
                assert_eq!(
                    status, "SUCCEEDED",
                    "round {round}: cancel said too late: {}",
                    done.text
                );
                assert_eq!(end, "ExecutionSucceeded", "round {round}");
                succeeded += 1;
            }
            other => panic!("round {round}: cancel answered {other}: {}", c.text),
        }
        // Terminal is final: a later read says the same.
        let again = api.get(&format!("/jobs/{id}"));
        assert_eq!(again.body["status"].as_str(), Some(status.as_str()));
    }
    eprintln!("100 rounds: {cancelled} cancelled, {succeeded} succeeded first");
    assert_eq!(cancelled + succeeded, 100);
}
