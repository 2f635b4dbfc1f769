//! A moto server (`moto[server]`, installed into `.venv` by `scripts/venv`) on a free
//! loopback port, for the adapter tests. Stopped when dropped.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct MotoServer {
    child: Child,
    pub url: String,
}

/// moto's own server, but answering one request at a time: moto's DynamoDB transactions
/// roll back by restoring a snapshot of the table, which undoes other requests' writes when
/// requests run in parallel. One at a time, each request is atomic and isolated, as on AWS,
/// while the clients still race each other.
///
/// The server binds port 0 itself and prints the port it got. Picking a free port first and
/// handing it over is a race: two tests running at once could be given the same port, and
/// then one moto fails to bind while both tests talk to the other (CI saw "Table already
/// exists", then "Connection refused" once the other test stopped its server).
const LAUNCHER: &str = r#"
import os, sys
from werkzeug.serving import make_server
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
app = DomainDispatcherApplication(create_backend_app)
server = make_server(sys.argv[1], 0, app, threaded=False, request_handler=MotoRequestHandler)
os.environ["MOTO_PORT"] = str(server.server_port)  # moto's own clients (executing Step Functions) call back here
print(server.server_port, flush=True)
os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # the reader is gone: nothing more on the pipe
server.serve_forever()
"#;

impl MotoServer {
    /// `LONGHAUL_MOTO_PYTHON`, or `.venv/bin/python` at the workspace root (with moto).
    pub fn python() -> PathBuf {
        if let Ok(p) = std::env::var("LONGHAUL_MOTO_PYTHON") {
            return PathBuf::from(p);
        }
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python")
    }

    /// Starts moto and waits until it listens. Panics with what to do when it cannot.
    pub fn start() -> MotoServer {
        let python = Self::python();
        assert!(
            python.exists(),
            "{} is missing: run scripts/venv (scripts/test does) or set LONGHAUL_MOTO_PYTHON",
            python.display()
        );
        let mut child = Command::new(&python)
            .args(["-c", LAUNCHER, "127.0.0.1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting moto");
        // The port line comes once the socket listens; EOF means moto exited first.
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_default();
        let mut server = MotoServer {
            child,
            url: String::new(),
        };
        let port: u16 = match line.trim().parse() {
            Ok(port) => port,
            Err(_) => {
                let _ = server.child.kill();
                let status = server
                    .child
                    .wait()
                    .map(|s| s.to_string())
                    .unwrap_or_default();
                panic!(
                    "moto did not start ({status}, said {line:?}): is moto[server] installed in \
                     .venv (scripts/venv)?"
                );
            }
        };
        server.url = format!("http://127.0.0.1:{port}");
        server
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a deployment has before any job: the jobs table (as [`create_jobs_table`]) and the
/// files bucket.
pub async fn create_table_and_bucket(clients: &crate::Clients, table: &str, bucket: &str) {
    create_jobs_table(&clients.dynamodb, table).await;
    clients
        .s3
        .create_bucket()
        .bucket(bucket)
        .send()
        .await
        .expect("create bucket");
}

/// Creates the jobs table exactly as template.yaml declares it (keys, attributes, indexes),
/// so the adapter tests run against the deployed schema, not a copy of it.
pub async fn create_jobs_table(client: &aws_sdk_dynamodb::Client, table: &str) {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType,
        Projection, ProjectionType, ScalarAttributeType,
    };
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../template.yaml");
    let text = std::fs::read_to_string(&path).expect("template.yaml");
    let template: serde_yaml::Value = serde_yaml::from_str(&text).expect("template.yaml parses");
    let resources = template["Resources"].as_mapping().expect("Resources");
    let p = &resources
        .values()
        .find(|r| r["Type"].as_str() == Some("AWS::DynamoDB::Table"))
        .expect("a DynamoDB table in template.yaml")["Properties"];
    let text_of = |v: &serde_yaml::Value| v.as_str().expect("a string").to_string();
    let key_schema = |v: &serde_yaml::Value| -> Vec<KeySchemaElement> {
        v.as_sequence()
            .expect("KeySchema")
            .iter()
            .map(|k| {
                KeySchemaElement::builder()
                    .attribute_name(text_of(&k["AttributeName"]))
                    .key_type(KeyType::from(text_of(&k["KeyType"]).as_str()))
                    .build()
                    .expect("key")
            })
            .collect()
    };
    let mut req = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .set_key_schema(Some(key_schema(&p["KeySchema"])));
    for a in p["AttributeDefinitions"]
        .as_sequence()
        .expect("AttributeDefinitions")
    {
        req = req.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(text_of(&a["AttributeName"]))
                .attribute_type(ScalarAttributeType::from(
                    text_of(&a["AttributeType"]).as_str(),
                ))
                .build()
                .expect("attribute"),
        );
    }
    for g in p["GlobalSecondaryIndexes"]
        .as_sequence()
        .into_iter()
        .flatten()
    {
        req = req.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(text_of(&g["IndexName"]))
                .set_key_schema(Some(key_schema(&g["KeySchema"])))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::from(
                            text_of(&g["Projection"]["ProjectionType"]).as_str(),
                        ))
                        .build(),
                )
                .build()
                .expect("index"),
        );
    }
    req.send().await.expect("the template's table is valid");
}
