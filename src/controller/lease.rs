//! Leader election: one replica acts, the others observe and decide. A lease item in
//! DynamoDB is taken and renewed with conditional writes, and every new holder gets a higher
//! fencing counter.
//!
//! No decision depends on the replicas' wall clocks agreeing. A holder acts only until the
//! instant it sent its last successful renewal plus the lease duration (less
//! [`super::LEASE_MARGIN`]), on its own monotonic clock. A taker takes a lease only after it
//! has seen the very same record (owner, fencing, version) unchanged for a full lease
//! duration on its own monotonic clock; every write changes the version, so a holder that
//! renews is never taken over. The record's wall-clock `expires` is for people to read.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use tokio::sync::Mutex;

use crate::aws::{AwsError, ErrorClass};

/// Who holds the lease, as this replica last saw it.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct LeaseState {
    pub leader: bool,
    pub holder: Option<String>,
    pub fencing: u64,
    /// The record's expiry by its writer's wall clock: for display only.
    pub expires: Option<DateTime<Utc>>,
    /// Until when this replica holds the lease, on its own monotonic clock: the instant it
    /// sent the renewal (or take-over) that succeeded, plus the lease duration. `None` for
    /// a leader without a lease (it always holds it) and for followers.
    #[serde(skip)]
    pub valid_until: Option<Instant>,
}

/// Tries to hold the lease at `now` (wall clock, written for display); returns whether this
/// replica may act.
pub trait Lease: Send + Sync {
    fn acquire_or_renew(
        &self,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<LeaseState, AwsError>> + Send;
    fn release(&self) -> impl Future<Output = Result<(), AwsError>> + Send;
    /// Who holds the lease, without taking, renewing or writing anything (a dry run). By
    /// default: not this replica.
    fn peek(&self) -> impl Future<Output = Result<LeaseState, AwsError>> + Send {
        async { Ok(LeaseState::default()) }
    }
}

/// A single replica: always the leader.
#[derive(Clone, Debug, Default)]
pub struct SoleLeader;

impl Lease for SoleLeader {
    async fn acquire_or_renew(&self, _now: DateTime<Utc>) -> Result<LeaseState, AwsError> {
        self.peek().await
    }
    async fn release(&self) -> Result<(), AwsError> {
        Ok(())
    }
    async fn peek(&self) -> Result<LeaseState, AwsError> {
        Ok(LeaseState {
            leader: true,
            holder: Some("self".into()),
            ..LeaseState::default()
        })
    }
}

/// The DynamoDB lease: item `pk = lease#<name>` with `owner`, `fencing`, `version` (one
/// higher on every write), `released` (set by a holder that let go) and `expires` (epoch
/// ms by the writer's clock, for display).
#[derive(Clone, Debug)]
pub struct DynamoLease {
    client: aws_sdk_dynamodb::Client,
    table: String,
    name: String,
    owner: String,
    duration: Duration,
    held: Arc<Mutex<Option<Held>>>,
    /// The record this replica last read while following, and since when (monotonic) it
    /// has seen it unchanged.
    seen: Arc<Mutex<Option<Seen>>>,
}

/// The lease as this replica holds it: the record it last wrote.
#[derive(Clone, Copy, Debug)]
struct Held {
    fencing: u64,
    version: u64,
}

#[derive(Clone, Debug)]
struct Seen {
    record: Record,
    since: Instant,
}

/// The lease item as read.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Record {
    owner: Option<String>,
    fencing: u64,
    /// `None` for an item written before versions existed.
    version: Option<u64>,
    released: bool,
    expires_ms: i64,
}

impl Record {
    fn state(&self) -> LeaseState {
        LeaseState {
            leader: false,
            holder: self.owner.clone(),
            fencing: self.fencing,
            expires: DateTime::from_timestamp_millis(self.expires_ms),
            valid_until: None,
        }
    }
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
            duration: Duration::from_secs(duration_secs),
            held: Arc::default(),
            seen: Arc::default(),
        }
    }

    /// The same lease with another duration (tests use leases shorter than a second).
    pub fn with_duration(mut self, duration: Duration) -> Self {
        self.duration = duration;
        self
    }

    fn key(&self) -> AttributeValue {
        AttributeValue::S(format!("lease#{}", self.name))
    }

    async fn read(&self) -> Result<Option<Record>, AwsError> {
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
        let Some(item) = resp.item() else {
            return Ok(None);
        };
        let n = |k: &str| {
            item.get(k)
                .and_then(|v| v.as_n().ok())
                .and_then(|v| v.parse::<i64>().ok())
        };
        Ok(Some(Record {
            owner: item.get("owner").and_then(|v| v.as_s().ok()).cloned(),
            fencing: n("fencing").unwrap_or(0).max(0) as u64,
            version: n("version").map(|v| v.max(0) as u64),
            released: item
                .get("released")
                .and_then(|v| v.as_bool().ok())
                .copied()
                .unwrap_or(false),
            expires_ms: n("expires").unwrap_or(0),
        }))
    }

    /// Writes the lease as this owner's with `fencing`, on the condition that the record is
    /// still `expected` (`None`: absent). Returns the instant the request was sent.
    async fn write(
        &self,
        now: DateTime<Utc>,
        fencing: u64,
        version: u64,
        expected: Option<(Option<u64>, Option<&str>, u64)>,
    ) -> Result<Instant, AwsError> {
        let expires = now.timestamp_millis() + self.duration.as_millis() as i64;
        let mut req = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", self.key())
            .item("owner", AttributeValue::S(self.owner.clone()))
            .item("expires", AttributeValue::N(expires.to_string()))
            .item("fencing", AttributeValue::N(fencing.to_string()))
            .item("version", AttributeValue::N(version.to_string()));
        req = match expected {
            None => req.condition_expression("attribute_not_exists(pk)"),
            Some((v, owner, f)) => {
                let owner_cond = match owner {
                    Some(o) => {
                        req =
                            req.expression_attribute_values(":o", AttributeValue::S(o.to_string()));
                        "#o = :o"
                    }
                    None => "attribute_not_exists(#o)",
                };
                let version_cond = match v {
                    Some(v) => {
                        req =
                            req.expression_attribute_values(":v", AttributeValue::N(v.to_string()));
                        "version = :v"
                    }
                    None => "attribute_not_exists(version)",
                };
                req.condition_expression(format!(
                    "{owner_cond} AND fencing = :f AND {version_cond}"
                ))
                .expression_attribute_names("#o", "owner")
                .expression_attribute_values(":f", AttributeValue::N(f.to_string()))
            }
        };
        let sent = Instant::now();
        req.send().await.map_err(|e| {
            crate::aws_error!(aws_sdk_dynamodb, e, "dynamodb", "PutItem", &self.table)
        })?;
        Ok(sent)
    }

    /// Follows `record`: remembers since when it has been seen unchanged.
    async fn follow(&self, record: &Record, at: Instant) -> LeaseState {
        let mut seen = self.seen.lock().await;
        if seen.as_ref().is_none_or(|s| s.record != *record) {
            *seen = Some(Seen {
                record: record.clone(),
                since: at,
            });
        }
        record.state()
    }
}

impl Lease for DynamoLease {
    async fn acquire_or_renew(&self, now: DateTime<Utc>) -> Result<LeaseState, AwsError> {
        let held = *self.held.lock().await;
        // What to write, and the record it must replace: renew what we hold; else read
        // the record and take it when it is absent, released, ours (a holder whose
        // renewal's answer was lost renews it as it is) or unchanged for a lease duration.
        let (fencing, expected) = match held {
            Some(h) => (
                h.fencing,
                Some((Some(h.version), Some(self.owner.clone()), h.fencing)),
            ),
            None => {
                let record = self.read().await?;
                let read_at = Instant::now();
                match record {
                    None => (1, None),
                    Some(r) => {
                        let mine = r.owner.as_deref() == Some(self.owner.as_str());
                        let waited_out = self.seen.lock().await.as_ref().is_some_and(|s| {
                            s.record == r && read_at.duration_since(s.since) >= self.duration
                        });
                        if !(mine || r.released || waited_out) {
                            return Ok(self.follow(&r, read_at).await);
                        }
                        let fencing = if mine { r.fencing } else { r.fencing + 1 };
                        (fencing, Some((r.version, r.owner.clone(), r.fencing)))
                    }
                }
            }
        };
        let version = match &expected {
            Some((v, ..)) => v.unwrap_or(0) + 1,
            None => 1,
        };
        let expected_ref = expected.as_ref().map(|(v, o, f)| (*v, o.as_deref(), *f));
        match self.write(now, fencing, version, expected_ref).await {
            Ok(sent) => {
                *self.held.lock().await = Some(Held { fencing, version });
                *self.seen.lock().await = None;
                Ok(LeaseState {
                    leader: true,
                    holder: Some(self.owner.clone()),
                    fencing,
                    expires: DateTime::from_timestamp_millis(
                        now.timestamp_millis() + self.duration.as_millis() as i64,
                    ),
                    valid_until: Some(sent + self.duration),
                })
            }
            Err(err) => {
                // Lost (someone else wrote the record) or unknown: not the leader until a
                // write is confirmed.
                *self.held.lock().await = None;
                if err.code.as_deref() == Some("ConditionalCheckFailedException") {
                    match self.read().await? {
                        Some(r) => Ok(self.follow(&r, Instant::now()).await),
                        None => Ok(LeaseState::default()),
                    }
                } else {
                    Err(err)
                }
            }
        }
    }

    async fn release(&self) -> Result<(), AwsError> {
        let Some(h) = *self.held.lock().await else {
            return Ok(());
        };
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", self.key())
            .update_expression("SET expires = :zero, released = :t, version = :next")
            .condition_expression("#o = :me AND fencing = :f AND version = :v")
            .expression_attribute_names("#o", "owner")
            .expression_attribute_values(":zero", AttributeValue::N("0".into()))
            .expression_attribute_values(":t", AttributeValue::Bool(true))
            .expression_attribute_values(":next", AttributeValue::N((h.version + 1).to_string()))
            .expression_attribute_values(":me", AttributeValue::S(self.owner.clone()))
            .expression_attribute_values(":f", AttributeValue::N(h.fencing.to_string()))
            .expression_attribute_values(":v", AttributeValue::N(h.version.to_string()))
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

    async fn peek(&self) -> Result<LeaseState, AwsError> {
        Ok(self.read().await?.map(|r| r.state()).unwrap_or_default())
    }
}
