//! Leader election: one replica acts, the others observe and decide. A lease item in
//! DynamoDB is taken and renewed with conditional writes; it expires when not renewed, and
//! every new holder gets a higher fencing counter.

use std::future::Future;
use std::sync::Arc;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use tokio::sync::Mutex;

use crate::aws::{AwsError, ErrorClass};

/// Who holds the lease, as this replica last saw it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LeaseState {
    pub leader: bool,
    pub holder: Option<String>,
    pub fencing: u64,
    pub expires: Option<DateTime<Utc>>,
}

/// Tries to hold the lease at `now`; returns whether this replica may act.
pub trait Lease: Send + Sync {
    fn acquire_or_renew(
        &self,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<LeaseState, AwsError>> + Send;
    fn release(&self) -> impl Future<Output = Result<(), AwsError>> + Send;
}

/// A single replica: always the leader.
#[derive(Clone, Debug, Default)]
pub struct SoleLeader;

impl Lease for SoleLeader {
    async fn acquire_or_renew(&self, _now: DateTime<Utc>) -> Result<LeaseState, AwsError> {
        Ok(LeaseState {
            leader: true,
            holder: Some("self".into()),
            fencing: 0,
            expires: None,
        })
    }
    async fn release(&self) -> Result<(), AwsError> {
        Ok(())
    }
}

/// The DynamoDB lease: item `pk = lease#<name>` with `owner`, `expires` (epoch ms) and
/// `fencing`.
#[derive(Clone, Debug)]
pub struct DynamoLease {
    client: aws_sdk_dynamodb::Client,
    table: String,
    name: String,
    owner: String,
    duration_ms: i64,
    held: Arc<Mutex<Option<u64>>>,
}

impl DynamoLease {
    pub fn new(
        sdk: &aws_config::SdkConfig,
        table: &str,
        name: &str,
        owner: &str,
        duration_secs: u64,
    ) -> Self {
        DynamoLease {
            client: crate::aws_client!(aws_sdk_dynamodb, sdk),
            table: table.into(),
            name: name.into(),
            owner: owner.into(),
            duration_ms: duration_secs as i64 * 1000,
            held: Arc::default(),
        }
    }

    fn key(&self) -> AttributeValue {
        AttributeValue::S(format!("lease#{}", self.name))
    }

    async fn read(&self) -> Result<(Option<String>, i64, u64), AwsError> {
        let resp = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", self.key())
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| {
                crate::aws_error!(aws_sdk_dynamodb, e, "dynamodb", "GetItem", &self.table)
            })?;
        let item = resp.item();
        let s = |k: &str| {
            item.and_then(|i| i.get(k))
                .and_then(|v| v.as_s().ok())
                .cloned()
        };
        let n = |k: &str| {
            item.and_then(|i| i.get(k))
                .and_then(|v| v.as_n().ok())
                .and_then(|v| v.parse::<i64>().ok())
        };
        Ok((
            s("owner"),
            n("expires").unwrap_or(0),
            n("fencing").unwrap_or(0) as u64,
        ))
    }
}

impl Lease for DynamoLease {
    async fn acquire_or_renew(&self, now: DateTime<Utc>) -> Result<LeaseState, AwsError> {
        let now_ms = now.timestamp_millis();
        let expires = now_ms + self.duration_ms;
        let held = *self.held.lock().await;
        // Renew what we hold (same owner, same fencing); take an expired or absent lease
        // with the fencing counter one higher. A lease this owner still holds but forgot
        // (a renewal whose answer was lost) is renewed as it is, not waited out.
        let (renew, fencing) = match held {
            Some(f) => (Some(f), f),
            None => {
                let (owner, exp, f) = self.read().await?;
                if owner.as_deref() == Some(self.owner.as_str()) && exp >= now_ms {
                    (Some(f), f)
                } else {
                    (None, f + 1)
                }
            }
        };
        let mut req = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", self.key())
            .item("owner", AttributeValue::S(self.owner.clone()))
            .item("expires", AttributeValue::N(expires.to_string()))
            .item("fencing", AttributeValue::N(fencing.to_string()));
        req = match renew {
            Some(f) => req
                .condition_expression("#o = :me AND fencing = :f")
                .expression_attribute_names("#o", "owner")
                .expression_attribute_values(":me", AttributeValue::S(self.owner.clone()))
                .expression_attribute_values(":f", AttributeValue::N(f.to_string())),
            None => req
                .condition_expression("attribute_not_exists(pk) OR expires < :now")
                .expression_attribute_values(":now", AttributeValue::N(now_ms.to_string())),
        };
        match req.send().await {
            Ok(_) => {
                *self.held.lock().await = Some(fencing);
                Ok(LeaseState {
                    leader: true,
                    holder: Some(self.owner.clone()),
                    fencing,
                    expires: DateTime::from_timestamp_millis(expires),
                })
            }
            Err(e) => {
                let err =
                    crate::aws_error!(aws_sdk_dynamodb, e, "dynamodb", "PutItem", &self.table);
                if err.code.as_deref() == Some("ConditionalCheckFailedException") {
                    *self.held.lock().await = None;
                    let (holder, exp, f) = self.read().await?;
                    Ok(LeaseState {
                        leader: false,
                        holder,
                        fencing: f,
                        expires: DateTime::from_timestamp_millis(exp),
                    })
                } else {
                    // Unknown outcome: act as a follower until the lease is confirmed.
                    *self.held.lock().await = None;
                    Err(err)
                }
            }
        }
    }

    async fn release(&self) -> Result<(), AwsError> {
        let Some(f) = *self.held.lock().await else {
            return Ok(());
        };
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", self.key())
            .update_expression("SET expires = :zero")
            .condition_expression("#o = :me AND fencing = :f")
            .expression_attribute_names("#o", "owner")
            .expression_attribute_values(":zero", AttributeValue::N("0".into()))
            .expression_attribute_values(":me", AttributeValue::S(self.owner.clone()))
            .expression_attribute_values(":f", AttributeValue::N(f.to_string()))
            .send()
            .await;
        *self.held.lock().await = None;
        match r {
            Ok(_) => Ok(()),
            Err(e) => {
                let err =
                    crate::aws_error!(aws_sdk_dynamodb, e, "dynamodb", "UpdateItem", &self.table);
                if err.code.as_deref() == Some("ConditionalCheckFailedException") {
                    Ok(()) // someone else holds it already
                } else {
                    Err(AwsError {
                        class: ErrorClass::Transient,
                        ..err
                    })
                }
            }
        }
    }
}
