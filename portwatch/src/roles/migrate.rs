//! `portwatch migrate`: apply the `sql/` migrations to ClickHouse (and create the
//! Kafka topics with `--topics`). Idempotent; refuses a newer schema.

use portwatch_stores::ClickHouseStore;

use crate::cli::MigrateArgs;
use crate::config::Config;
use crate::output;

/// Run the migrations once and print what was done as one JSON line.
pub async fn run(cfg: &Config, args: &MigrateArgs) -> anyhow::Result<()> {
    let store = ClickHouseStore::new(cfg.scaleout.clickhouse.clone())?;
    let report = store.migrate().await?;
    let mut topics = None;
    if args.topics {
        // A refusal (credentials, trust, protocol) is named before anything is asked.
        let (kafka, timeout) = (cfg.scaleout.kafka.clone(), cfg.scaleout.kafka_timeout);
        tokio::task::spawn_blocking(move || portwatch_ingest::kafka::preflight(&kafka, timeout)).await??;
        topics = Some(
            portwatch_ingest::kafka::ensure_topics(&cfg.scaleout.kafka, cfg.scaleout.kafka_timeout).await?,
        );
    }
    output::json_line(
        &mut std::io::stdout().lock(),
        &serde_json::json!({
            "database": cfg.scaleout.clickhouse.database,
            "from": report.from,
            "to": report.to,
            "applied": report.applied,
            "topics": args.topics,
            "topics_created": topics.as_ref().map(|t| t.created.clone()),
            "topic_settings_repaired": topics.as_ref().map(|t| {
                t.repaired
                    .iter()
                    .map(|(topic, key, from, to)| serde_json::json!({"topic": topic, "key": key, "from": from, "to": to}))
                    .collect::<Vec<_>>()
            }),
        }),
    )?;
    Ok(())
}
