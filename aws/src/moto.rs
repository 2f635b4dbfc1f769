//! A moto server (`moto[server]`, installed into `.venv` by `scripts/test`) on a free
//! loopback port, for the adapter tests. Stopped when dropped.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct MotoServer {
    child: Child,
    pub url: String,
}

impl MotoServer {
    /// `LONGHAUL_MOTO_SERVER`, or `.venv/bin/moto_server` at the workspace root.
    pub fn binary() -> PathBuf {
        if let Ok(p) = std::env::var("LONGHAUL_MOTO_SERVER") {
            return PathBuf::from(p);
        }
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/moto_server")
    }

    /// Starts moto and waits until it answers. Panics with what to do when it cannot.
    pub fn start() -> MotoServer {
        let bin = Self::binary();
        assert!(
            bin.exists(),
            "{} is missing: run scripts/venv (scripts/test does) or set LONGHAUL_MOTO_SERVER",
            bin.display()
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting moto_server");
        let server = MotoServer {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not start in 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
