//! portwatch's topics as `migrate --topics` makes and keeps them: created where
//! missing, and their retention repaired where it is not what the journal needs.
//! `decisions` keeps every record forever (users, tokens, approvals, blocks and
//! what was notified are folded from its first record on every start);
//! `observations` keeps `[kafka] observations_retention` (ClickHouse's
//! `observations` table is the archive, see `portwatch rebuild`).

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, ConfigSource, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use super::{kafka_err, KafkaSettings};
use crate::LogError;

/// Default `[kafka] observations_retention`: 30 days.
pub const DEFAULT_OBSERVATIONS_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

/// The retention settings a topic must have: `(config key, value)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    /// Topic.
    pub topic: String,
    /// Settings (`retention.ms`, `retention.bytes`).
    pub settings: Vec<(&'static str, String)>,
}

/// What `ensure_topics` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicsReport {
    /// Topics created.
    pub created: Vec<String>,
    /// Settings changed on existing topics: `topic`, `key`, the value found (None:
    /// the broker's default), the value set.
    pub repaired: Vec<(String, String, Option<String>, String)>,
}

impl KafkaSettings {
    /// The retention each of portwatch's topics must have.
    pub fn retention(&self) -> Vec<Retention> {
        let millis = i64::try_from(self.observations_retention.as_millis()).unwrap_or(i64::MAX);
        vec![
            Retention {
                topic: self.topics.decisions.clone(),
                settings: vec![("retention.ms", "-1".into()), ("retention.bytes", "-1".into())],
            },
            Retention {
                topic: self.topics.observations.clone(),
                settings: vec![("retention.ms", millis.to_string())],
            },
        ]
    }
}

/// Create portwatch's topics where missing, then make the retention of the
/// journal's topics what it must be (describe, then alter what differs, keeping
/// every other setting the topic has).
pub async fn ensure_topics(settings: &KafkaSettings, timeout: Duration) -> Result<TopicsReport, LogError> {
    let admin: AdminClient<DefaultClientContext> = settings
        .client_config()
        .create()
        .map_err(|e| kafka_err("creating admin client", e))?;
    let options = AdminOptions::new()
        .operation_timeout(Some(timeout))
        .request_timeout(Some(timeout));
    let partitions = i32::try_from(settings.partitions).unwrap_or(i32::MAX);
    let replication = i32::try_from(settings.replication).unwrap_or(i32::MAX);
    let retention = settings.retention();
    let new: Vec<NewTopic<'_>> = settings
        .topics
        .all()
        .iter()
        .map(|&name| {
            // The journal is one sequence: its readers fold it in one order.
            let partitions = if name == settings.topics.decisions {
                1
            } else {
                partitions
            };
            let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(replication));
            retention
                .iter()
                .filter(|r| r.topic == name)
                .flat_map(|r| &r.settings)
                .fold(topic, |topic, (key, value)| topic.set(key, value))
        })
        .collect();
    let mut report = TopicsReport::default();
    let results = admin
        .create_topics(&new, &options)
        .await
        .map_err(|e| kafka_err("creating topics", e))?;
    for result in results {
        match result {
            Ok(name) => {
                tracing::info!(topic = %name, partitions, replication, "topic created");
                report.created.push(name);
            }
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(kafka_err(
                    &format!("creating topic {name}"),
                    KafkaError::AdminOp(code),
                ))
            }
        }
    }
    for wanted in &retention {
        report.repaired.extend(repair(&admin, &options, wanted).await?);
    }
    Ok(report)
}

/// Set `wanted`'s settings on its topic where they differ. AlterConfigs replaces a
/// topic's whole dynamic configuration, so the settings it already has are sent
/// along unchanged.
async fn repair(
    admin: &AdminClient<DefaultClientContext>,
    options: &AdminOptions,
    wanted: &Retention,
) -> Result<Vec<(String, String, Option<String>, String)>, LogError> {
    let what = format!("describing the settings of topic {}", wanted.topic);
    let described = admin
        .describe_configs(&[ResourceSpecifier::Topic(&wanted.topic)], options)
        .await
        .map_err(|e| kafka_err(&what, e))?;
    let resource = match described.into_iter().next() {
        Some(Ok(resource)) => resource,
        Some(Err(code)) => return Err(kafka_err(&what, KafkaError::AdminOp(code))),
        None => return Ok(Vec::new()),
    };
    let mut dynamic: BTreeMap<String, String> = resource
        .entries
        .iter()
        .filter(|e| e.source == ConfigSource::DynamicTopic && !e.is_sensitive)
        .filter_map(|e| Some((e.name.clone(), e.value.clone()?)))
        .collect();
    let mut changed = Vec::new();
    for (key, value) in &wanted.settings {
        let found = resource.get(key).and_then(|e| e.value.clone());
        if found.as_deref() != Some(value.as_str()) {
            changed.push((wanted.topic.clone(), (*key).to_string(), found, value.clone()));
        }
        dynamic.insert((*key).to_string(), value.clone());
    }
    if changed.is_empty() {
        return Ok(changed);
    }
    let alter = dynamic.iter().fold(
        AlterConfig::new(ResourceSpecifier::Topic(&wanted.topic)),
        |a, (k, v)| a.set(k, v),
    );
    let what = format!("setting the retention of topic {}", wanted.topic);
    let results = admin
        .alter_configs(&[alter], options)
        .await
        .map_err(|e| kafka_err(&what, e))?;
    if let Some(Err((_, code))) = results.into_iter().next() {
        return Err(kafka_err(&what, KafkaError::AdminOp(code)));
    }
    for (topic, key, from, to) in &changed {
        tracing::warn!(%topic, key, from = from.as_deref().unwrap_or("(broker default)"), to, "topic setting repaired");
    }
    Ok(changed)
}
