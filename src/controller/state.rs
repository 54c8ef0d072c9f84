//! Where the decision history lives between ticks and across restarts: in memory for tests
//! and single-process use, in DynamoDB (the lease's table) for the daemon.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::types::AttributeValue;

use crate::aws::AwsError;
use crate::policy::History;

/// Loads and saves per-target histories.
pub trait StateStore: Send + Sync {
    /// Every stored history of the given targets (missing ones are simply absent).
    fn load(
        &self,
        targets: &[String],
    ) -> impl Future<Output = Result<HashMap<String, History>, AwsError>> + Send;
    /// Saves one target's history.
    fn save(
        &self,
        target: &str,
        history: &History,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
    /// Takes the history of a target that a reload removed. A store that saves every tick
    /// already has it; one that does not keeps it here, for a later reload that adds the
    /// target again.
    fn retire(&self, _target: &str, _history: History) {}
}

/// Histories in process memory; clones share the same map (a restart of the controller
/// within one process keeps them, as a test of restart safety needs).
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<HashMap<String, History>>>,
}

impl StateStore for MemoryStore {
    async fn load(&self, targets: &[String]) -> Result<HashMap<String, History>, AwsError> {
        let m = self.inner.lock().expect("store lock");
        Ok(targets
            .iter()
            .filter_map(|t| m.get(t).map(|h| (t.clone(), h.clone())))
            .collect())
    }
    async fn save(&self, target: &str, history: &History) -> Result<(), AwsError> {
        self.inner
            .lock()
            .expect("store lock")
            .insert(target.to_string(), history.clone());
        Ok(())
    }
}

/// The store of a daemon without a lease table: the controller keeps the live histories in
/// its own memory and nothing outlives the process, so a save copies nothing (at 10,000
/// targets a copy of every history, made each tick, was megabytes of memory and of copying).
/// Only the history of a target a reload removes is kept, so that a reload that adds the
/// target again hands it back, as a store that saves every tick would.
#[derive(Clone, Debug, Default)]
pub struct LocalStore {
    retired: Arc<Mutex<HashMap<String, History>>>,
}

impl LocalStore {
    /// How many removed targets' histories are kept.
    pub fn retired(&self) -> usize {
        self.retired.lock().expect("store lock").len()
    }
}

impl StateStore for LocalStore {
    async fn load(&self, targets: &[String]) -> Result<HashMap<String, History>, AwsError> {
        let mut m = self.retired.lock().expect("store lock");
        Ok(targets
            .iter()
            .filter_map(|t| m.remove(t).map(|h| (t.clone(), h)))
            .collect())
    }
    async fn save(&self, _target: &str, _history: &History) -> Result<(), AwsError> {
        Ok(())
    }
    fn retire(&self, target: &str, history: History) {
        self.retired
            .lock()
            .expect("store lock")
            .insert(target.to_string(), history);
    }
}

/// Histories as items of the DynamoDB table that also holds the lease: key `pk` =
/// `history#<namespace>#<target>`, attribute `history` = JSON.
#[derive(Clone, Debug)]
pub struct DynamoStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
    namespace: String,
}

impl DynamoStore {
    pub fn new(sdk: &aws_config::SdkConfig, table: &str, namespace: &str) -> Self {
        DynamoStore {
            client: crate::aws_client!(aws_sdk_dynamodb, sdk),
            table: table.into(),
            namespace: namespace.into(),
        }
    }

    pub fn key(&self, target: &str) -> String {
        format!("history#{}#{target}", self.namespace)
    }
}

/// Creates the table the lease and the histories share (key `pk`, a string; on-demand
/// capacity), if it does not exist. The deployment template creates it in AWS; tests and
/// the local demo call this.
pub async fn create_table(sdk: &aws_config::SdkConfig, table: &str) -> Result<(), AwsError> {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    };
    let client = aws_sdk_dynamodb::Client::new(sdk);
    let r = client
        .create_table()
        .table_name(table)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(|e| {
                    AwsError::new(
                        crate::aws::ErrorClass::Invalid,
                        "dynamodb",
                        "CreateTable",
                        table,
                        e.to_string(),
                    )
                })?,
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(KeyType::Hash)
                .build()
                .map_err(|e| {
                    AwsError::new(
                        crate::aws::ErrorClass::Invalid,
                        "dynamodb",
                        "CreateTable",
                        table,
                        e.to_string(),
                    )
                })?,
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await;
    match r {
        Ok(_) => Ok(()),
        Err(e) => {
            let err = crate::aws_error!(aws_sdk_dynamodb, e, "dynamodb", "CreateTable", table);
            if err.code.as_deref() == Some("ResourceInUseException") {
                Ok(())
            } else {
                Err(err)
            }
        }
    }
}

impl StateStore for DynamoStore {
    async fn load(&self, targets: &[String]) -> Result<HashMap<String, History>, AwsError> {
        let mut out = HashMap::new();
        for t in targets {
            let resp = self
                .client
                .get_item()
                .table_name(&self.table)
                .key("pk", AttributeValue::S(self.key(t)))
                .consistent_read(true)
                .send()
                .await
                .map_err(|e| {
                    crate::aws_error!(aws_sdk_dynamodb, e, "dynamodb", "GetItem", &self.table)
                })?;
            if let Some(AttributeValue::S(json)) = resp.item().and_then(|i| i.get("history")) {
                // A history that no longer parses (an older format) is dropped: the
                // core then behaves as on first sight, which holds scale-in.
                if let Ok(h) = serde_json::from_str::<History>(json) {
                    out.insert(t.clone(), h);
                }
            }
        }
        Ok(out)
    }

    async fn save(&self, target: &str, history: &History) -> Result<(), AwsError> {
        let json = serde_json::to_string(history).expect("history serializes");
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", AttributeValue::S(self.key(target)))
            .item("history", AttributeValue::S(json))
            .send()
            .await
            .map_err(|e| {
                crate::aws_error!(aws_sdk_dynamodb, e, "dynamodb", "PutItem", &self.table)
            })?;
        Ok(())
    }
}
