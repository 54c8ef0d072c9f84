//! Aurora readers: `DescribeDBClusters` (members, writer flag) and `DescribeDBInstances`
//! (status, class, tags) to count readers; `CreateDBInstance` and `DeleteDBInstance` to
//! change their number.
//!
//! capstan adds readers named `<reader_prefix>-<n>` (lowest free n) tagged
//! `capstan:managed=true` and `capstan:target=<target name>`, and removes only readers so
//! tagged for the same target (highest n first): never the writer, never a reader someone
//! else created. A whole change is made in one call (all readers to add or remove at once);
//! while any instance of the cluster is not `available` the cluster has a change in flight
//! and nothing new starts.

use aws_sdk_rds::types::{Filter, Tag};
use aws_sdk_rds::Client;

use super::CapacityState;
use crate::aws::{AwsError, ErrorClass};
use crate::aws_error;

pub(crate) const MANAGED_TAG: &str = "capstan:managed";
pub(crate) const TARGET_TAG: &str = "capstan:target";

/// The parts of a DB cluster capstan reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ClusterView {
    pub id: String,
    pub engine: String,
    /// Member instance ids with their writer flag.
    pub members: Vec<(String, bool)>,
}

/// The parts of a DB instance capstan reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct DbInstanceView {
    pub id: String,
    pub cluster: Option<String>,
    pub status: String,
    pub class: Option<String>,
    pub tags: Vec<(String, String)>,
}

impl ClusterView {
    pub(crate) fn from_sdk(c: &aws_sdk_rds::types::DbCluster) -> Self {
        ClusterView {
            id: c.db_cluster_identifier().unwrap_or_default().to_string(),
            engine: c.engine().unwrap_or_default().to_string(),
            members: c
                .db_cluster_members()
                .iter()
                .filter_map(|m| {
                    Some((
                        m.db_instance_identifier()?.to_string(),
                        m.is_cluster_writer().unwrap_or(false),
                    ))
                })
                .collect(),
        }
    }
}

impl DbInstanceView {
    pub(crate) fn from_sdk(i: &aws_sdk_rds::types::DbInstance) -> Self {
        DbInstanceView {
            id: i.db_instance_identifier().unwrap_or_default().to_string(),
            cluster: i.db_cluster_identifier().map(str::to_string),
            status: i.db_instance_status().unwrap_or_default().to_string(),
            class: i.db_instance_class().map(str::to_string),
            tags: i
                .tag_list()
                .iter()
                .filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or("").to_string())))
                .collect(),
        }
    }
}

/// One instance of the cluster as capstan sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Node {
    pub id: String,
    pub writer: bool,
    pub status: String,
    pub class: Option<String>,
    /// The capstan target that created this instance, if capstan did.
    pub managed_for: Option<String>,
}

fn managed_for(tags: &[(String, String)]) -> Option<String> {
    let managed = tags
        .iter()
        .any(|(k, v)| k == MANAGED_TAG && v.eq_ignore_ascii_case("true"));
    if !managed {
        return None;
    }
    Some(
        tags.iter()
            .find(|(k, _)| k == TARGET_TAG)
            .map(|(_, v)| v.clone())
            .unwrap_or_default(),
    )
}

/// The cluster's instances: its members (with their writer flag) and any instance that
/// names the cluster but is not a member yet (being created).
pub(crate) fn nodes(cluster: &ClusterView, instances: &[DbInstanceView]) -> Vec<Node> {
    let find = |id: &str| instances.iter().find(|i| i.id.eq_ignore_ascii_case(id));
    let mut out: Vec<Node> = cluster
        .members
        .iter()
        .map(|(id, writer)| {
            let inst = find(id);
            Node {
                id: id.clone(),
                writer: *writer,
                status: inst.map(|i| i.status.clone()).unwrap_or_default(),
                class: inst.and_then(|i| i.class.clone()),
                managed_for: inst.and_then(|i| managed_for(&i.tags)),
            }
        })
        .collect();
    for i in instances {
        let in_cluster = i
            .cluster
            .as_deref()
            .is_some_and(|c| c.eq_ignore_ascii_case(&cluster.id));
        if in_cluster && !out.iter().any(|n| n.id.eq_ignore_ascii_case(&i.id)) {
            out.push(Node {
                id: i.id.clone(),
                writer: false,
                status: i.status.clone(),
                class: i.class.clone(),
                managed_for: managed_for(&i.tags),
            });
        }
    }
    out
}

/// Statuses of an instance that will not become available by itself.
fn stuck(status: &str) -> bool {
    matches!(status, "failed" | "stopped" | "stopping" | "storage-full")
        || status.starts_with("inaccessible")
        || status.starts_with("incompatible")
}

fn reader_counts(n: &Node) -> bool {
    !n.writer && n.status != "deleting"
}

/// The reader capacity of a cluster.
pub(crate) fn capacity(nodes: &[Node], target_name: &str) -> CapacityState {
    let readers: Vec<&Node> = nodes.iter().filter(|n| reader_counts(n)).collect();
    let mut state = CapacityState {
        desired: readers.len() as u32,
        ready: readers.iter().filter(|n| n.status == "available").count() as u32,
        pending: readers
            .iter()
            .filter(|n| n.status != "available" && !stuck(&n.status))
            .count() as u32,
        ..CapacityState::default()
    };
    let busy: Vec<String> = nodes
        .iter()
        .filter(|n| n.status != "available")
        .map(|n| {
            let status = if n.status.is_empty() {
                "unknown"
            } else {
                &n.status
            };
            format!("{} is {status}", n.id)
        })
        .collect();
    if !busy.is_empty() {
        state.change_in_flight = true;
        state.scale_in_blocked = Some(format!("cluster change in flight: {}", busy.join(", ")));
    }
    let managed = readers
        .iter()
        .filter(|n| n.managed_for.as_deref() == Some(target_name))
        .count();
    state.notes.push(format!(
        "{} reader(s), {managed} added by capstan for this target",
        readers.len()
    ));
    if !nodes.iter().any(|n| n.writer) {
        state.notes.push("the cluster has no writer".into());
    }
    for n in readers.iter().filter(|n| stuck(&n.status)) {
        state.notes.push(format!(
            "reader {} is {} and serves nothing",
            n.id, n.status
        ));
    }
    state
}

/// The number of a reader named `<prefix>-<n>` (identifiers compare case-insensitively).
pub(crate) fn reader_number(prefix: &str, id: &str) -> Option<u32> {
    let id = id.to_ascii_lowercase();
    let rest = id.strip_prefix(&prefix.to_ascii_lowercase())?;
    let digits = rest.strip_prefix('-')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.starts_with('0') {
        return None;
    }
    digits.parse().ok()
}

/// `n` new reader identifiers `<prefix>-<k>`, the lowest k >= 1 not taken.
pub(crate) fn reader_names(prefix: &str, existing: &[&str], n: usize) -> Vec<String> {
    let taken: Vec<u32> = existing
        .iter()
        .filter_map(|id| reader_number(prefix, id))
        .collect();
    let prefix = prefix.to_ascii_lowercase();
    (1u32..)
        .filter(|k| !taken.contains(k))
        .take(n)
        .map(|k| format!("{prefix}-{k}"))
        .collect()
}

/// Up to `n` readers capstan may remove: readers it added for this target (never the
/// writer, never anyone else's), highest number first.
pub(crate) fn removable(nodes: &[Node], target_name: &str, prefix: &str, n: usize) -> Vec<String> {
    let mut candidates: Vec<(Option<u32>, &str)> = nodes
        .iter()
        .filter(|r| reader_counts(r) && r.managed_for.as_deref() == Some(target_name))
        .map(|r| (reader_number(prefix, &r.id), r.id.as_str()))
        .collect();
    // Numbered readers first, highest number first; then any others, by id descending.
    candidates.sort_by(|a, b| match (a.0, b.0) {
        (Some(x), Some(y)) => y.cmp(&x),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => b.1.cmp(a.1),
    });
    candidates
        .into_iter()
        .take(n)
        .map(|(_, id)| id.to_string())
        .collect()
}

/// The instance class of new readers: the configured one, else the writer's.
pub(crate) fn reader_class(configured: Option<&str>, nodes: &[Node]) -> Option<String> {
    configured.map(str::to_string).or_else(|| {
        nodes
            .iter()
            .find(|n| n.writer)
            .or_else(|| nodes.first())
            .and_then(|n| n.class.clone())
    })
}

fn cluster_filter(ids: &[&str]) -> Filter {
    Filter::builder()
        .name("db-cluster-id")
        .set_values(Some(ids.iter().map(|s| s.to_string()).collect()))
        .build()
}

/// `DescribeDBClusters` by identifier, one cluster a call (so that IAM can grant it on the
/// cluster's ARN rather than `cluster:*`): clusters that do not exist are absent.
pub(crate) async fn describe_clusters(
    client: &Client,
    ids: &[&str],
) -> Result<Vec<ClusterView>, AwsError> {
    let mut clusters = Vec::new();
    // At most 16 calls in flight, as for the other batched reads.
    for chunk in ids.chunks(16) {
        let calls = chunk.iter().map(|id| describe_cluster(client, id));
        for r in crate::util::join_all(calls).await {
            clusters.extend(r?);
        }
    }
    Ok(clusters)
}

async fn describe_cluster(client: &Client, id: &str) -> Result<Option<ClusterView>, AwsError> {
    match client
        .describe_db_clusters()
        .db_cluster_identifier(id)
        .send()
        .await
    {
        Ok(out) => Ok(out.db_clusters().first().map(ClusterView::from_sdk)),
        Err(e) => {
            let e = aws_error!(aws_sdk_rds, e, "rds", "DescribeDBClusters", id);
            if e.class == ErrorClass::NotFound {
                Ok(None)
            } else {
                Err(e)
            }
        }
    }
}

/// `DescribeDBInstances` of every instance in the given clusters.
pub(crate) async fn describe_instances(
    client: &Client,
    cluster_ids: &[&str],
) -> Result<Vec<DbInstanceView>, AwsError> {
    let mut instances = Vec::new();
    for chunk in cluster_ids.chunks(100) {
        let mut marker: Option<String> = None;
        loop {
            let out = client
                .describe_db_instances()
                .filters(cluster_filter(chunk))
                .set_marker(marker.take())
                .send()
                .await
                .map_err(|e| {
                    aws_error!(
                        aws_sdk_rds,
                        e,
                        "rds",
                        "DescribeDBInstances",
                        chunk.join(",")
                    )
                })?;
            instances.extend(out.db_instances().iter().map(DbInstanceView::from_sdk));
            match out.marker() {
                Some(m) if !m.is_empty() => marker = Some(m.to_string()),
                _ => break,
            }
        }
    }
    Ok(instances)
}

pub(crate) fn not_found(cluster: &str) -> AwsError {
    AwsError::new(
        ErrorClass::NotFound,
        "rds",
        "DescribeDBClusters",
        cluster,
        "DB cluster not found",
    )
}

/// The cluster and its instances, for one cluster.
pub(crate) async fn describe_one(
    client: &Client,
    cluster: &str,
) -> Result<(ClusterView, Vec<Node>), AwsError> {
    let c = describe_clusters(client, &[cluster])
        .await?
        .into_iter()
        .find(|c| c.id.eq_ignore_ascii_case(cluster))
        .ok_or_else(|| not_found(cluster))?;
    let instances = describe_instances(client, &[cluster]).await?;
    let nodes = nodes(&c, &instances);
    Ok((c, nodes))
}

pub(crate) async fn create_reader(
    client: &Client,
    cluster: &ClusterView,
    id: &str,
    class: &str,
    target_name: &str,
) -> Result<(), AwsError> {
    client
        .create_db_instance()
        .db_instance_identifier(id)
        .db_cluster_identifier(&cluster.id)
        .engine(&cluster.engine)
        .db_instance_class(class)
        .tags(Tag::builder().key(MANAGED_TAG).value("true").build())
        .tags(Tag::builder().key(TARGET_TAG).value(target_name).build())
        .send()
        .await
        .map_err(|e| aws_error!(aws_sdk_rds, e, "rds", "CreateDBInstance", id))?;
    Ok(())
}

pub(crate) async fn delete_reader(client: &Client, id: &str) -> Result<(), AwsError> {
    client
        .delete_db_instance()
        .db_instance_identifier(id)
        .send()
        .await
        .map_err(|e| aws_error!(aws_sdk_rds, e, "rds", "DeleteDBInstance", id))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, writer: bool, status: &str, managed_for: Option<&str>) -> Node {
        Node {
            id: id.into(),
            writer,
            status: status.into(),
            class: Some(
                if writer {
                    "db.r6g.large"
                } else {
                    "db.r6g.xlarge"
                }
                .into(),
            ),
            managed_for: managed_for.map(str::to_string),
        }
    }

    fn inst(id: &str, cluster: &str, status: &str, tags: &[(&str, &str)]) -> DbInstanceView {
        DbInstanceView {
            id: id.into(),
            cluster: Some(cluster.into()),
            status: status.into(),
            class: Some("db.r6g.large".into()),
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn reads_cluster_and_instances_from_the_sdk() {
        use aws_sdk_rds::types::{DbCluster, DbClusterMember, DbInstance};
        let c = DbCluster::builder()
            .db_cluster_identifier("orders")
            .engine("aurora-postgresql")
            .db_cluster_members(
                DbClusterMember::builder()
                    .db_instance_identifier("orders-1")
                    .is_cluster_writer(true)
                    .build(),
            )
            .db_cluster_members(
                DbClusterMember::builder()
                    .db_instance_identifier("orders-2")
                    .build(),
            )
            .build();
        let v = ClusterView::from_sdk(&c);
        assert_eq!(v.engine, "aurora-postgresql");
        assert_eq!(
            v.members,
            vec![
                ("orders-1".to_string(), true),
                ("orders-2".to_string(), false)
            ]
        );
        let i = DbInstance::builder()
            .db_instance_identifier("orders-2")
            .db_cluster_identifier("orders")
            .db_instance_status("creating")
            .db_instance_class("db.r6g.large")
            .tag_list(Tag::builder().key(MANAGED_TAG).value("true").build())
            .tag_list(Tag::builder().key(TARGET_TAG).value("db").build())
            .build();
        assert_eq!(
            DbInstanceView::from_sdk(&i),
            inst(
                "orders-2",
                "orders",
                "creating",
                &[(MANAGED_TAG, "true"), (TARGET_TAG, "db")]
            )
        );
    }

    #[test]
    fn nodes_join_members_and_instances() {
        let cluster = ClusterView {
            id: "orders".into(),
            engine: "aurora-postgresql".into(),
            members: vec![("orders-1".into(), true), ("orders-2".into(), false)],
        };
        let instances = vec![
            inst("orders-1", "orders", "available", &[]),
            inst(
                "orders-2",
                "orders",
                "available",
                &[("capstan:managed", "true"), ("capstan:target", "db")],
            ),
            inst(
                "orders-capstan-3",
                "orders",
                "creating",
                &[("capstan:managed", "true")],
            ),
        ];
        let n = nodes(&cluster, &instances);
        assert_eq!(n.len(), 3);
        assert!(n[0].writer && n[0].managed_for.is_none());
        assert_eq!(n[1].managed_for.as_deref(), Some("db"));
        assert_eq!(
            (
                n[2].writer,
                n[2].status.as_str(),
                n[2].managed_for.as_deref()
            ),
            (false, "creating", Some(""))
        );
    }

    #[test]
    fn capacity_counts_readers_and_flags_changes_in_flight() {
        let nodes = vec![
            node("w", true, "available", None),
            node("r-1", false, "available", Some("db")),
            node("r-2", false, "creating", Some("db")),
            node("manual", false, "available", None),
            node("r-3", false, "deleting", Some("db")),
        ];
        let c = capacity(&nodes, "db");
        assert_eq!((c.desired, c.ready, c.pending), (3, 2, 1));
        assert!(c.change_in_flight);
        assert_eq!(
            c.scale_in_blocked.as_deref(),
            Some("cluster change in flight: r-2 is creating, r-3 is deleting")
        );
        assert_eq!(
            c.notes[0],
            "3 reader(s), 2 added by capstan for this target"
        );

        let settled = vec![
            node("w", true, "available", None),
            node("r-1", false, "available", Some("db")),
        ];
        let c = capacity(&settled, "db");
        assert_eq!((c.desired, c.ready, c.pending), (1, 1, 0));
        assert!(!c.change_in_flight);
        assert_eq!(c.scale_in_blocked, None);

        // A modifying writer is a change in flight too; a failed reader is not on its way.
        let c = capacity(
            &[
                node("w", true, "modifying", None),
                node("r-1", false, "failed", Some("db")),
            ],
            "db",
        );
        assert!(c.change_in_flight);
        assert_eq!((c.desired, c.ready, c.pending), (1, 0, 0));
        assert!(c
            .notes
            .iter()
            .any(|n| n == "reader r-1 is failed and serves nothing"));
    }

    #[test]
    fn reader_names_take_the_lowest_free_numbers() {
        assert_eq!(
            reader_names("db-capstan", &[], 2),
            vec!["db-capstan-1", "db-capstan-2"]
        );
        let existing = [
            "db-capstan-1",
            "DB-Capstan-3",
            "db-capstan-x",
            "db-capstan-05",
            "db-capstan-2-old",
            "db-writer",
        ];
        assert_eq!(
            reader_names("db-capstan", &existing, 3),
            vec!["db-capstan-2", "db-capstan-4", "db-capstan-5"]
        );
        assert_eq!(
            reader_names("Db-Capstan", &["db-capstan-1"], 1),
            vec!["db-capstan-2"]
        );
        assert!(reader_names("p", &[], 0).is_empty());
    }

    #[test]
    fn reader_numbers_parse_only_exact_names() {
        assert_eq!(reader_number("p", "p-7"), Some(7));
        assert_eq!(reader_number("p", "P-12"), Some(12));
        assert_eq!(reader_number("p", "p-"), None);
        assert_eq!(reader_number("p", "p-07"), None);
        assert_eq!(reader_number("p", "p-1a"), None);
        assert_eq!(reader_number("p", "px-1"), None);
        assert_eq!(reader_number("p", "p-1-2"), None);
    }

    #[test]
    fn removal_picks_own_readers_only_highest_number_first() {
        let nodes = vec![
            // A writer tagged as capstan's (a promoted reader): never removed.
            node("db-capstan-9", true, "available", Some("db")),
            node("db-capstan-1", false, "available", Some("db")),
            node("db-capstan-4", false, "available", Some("db")),
            node("db-capstan-2", false, "available", Some("db")),
            // Readers capstan did not create, or created for another target.
            node("manual", false, "available", None),
            node("db-capstan-7", false, "available", Some("other")),
            node("db-capstan-8", false, "available", None),
            // Managed but not named by the prefix: after the numbered ones.
            node("renamed", false, "available", Some("db")),
            // Already going away.
            node("db-capstan-6", false, "deleting", Some("db")),
        ];
        assert_eq!(
            removable(&nodes, "db", "db-capstan", 2),
            vec!["db-capstan-4", "db-capstan-2"]
        );
        assert_eq!(
            removable(&nodes, "db", "db-capstan", 10),
            vec!["db-capstan-4", "db-capstan-2", "db-capstan-1", "renamed"]
        );
        assert!(removable(&nodes, "nobody", "db-capstan", 3).is_empty());
    }

    #[test]
    fn reader_class_from_config_or_writer() {
        let nodes = vec![
            node("r", false, "available", None),
            node("w", true, "available", None),
        ];
        assert_eq!(
            reader_class(Some("db.t4g.medium"), &nodes).as_deref(),
            Some("db.t4g.medium")
        );
        assert_eq!(reader_class(None, &nodes).as_deref(), Some("db.r6g.large"));
        assert_eq!(reader_class(None, &[]), None);
    }
}
