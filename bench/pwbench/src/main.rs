//! `pwbench`: the scale-out pipeline measured against its ceilings, on the same
//! broker and ClickHouse, with the same event shape. `bench/pipeline.sh` runs it;
//! every subcommand prints one JSON line.
//!
//! - `kafka`: raw rdkafka, no portwatch code on the path: produce N keyed event
//!   payloads (idempotent, acks=all, as portwatch produces), then consume them as a
//!   group. The broker's ceiling.
//! - `clickhouse`: insert N observation rows straight into a fresh table in batches.
//!   ClickHouse's ceiling for the widest table the projector writes.
//! - `pipeline`: a probe node's path end to end: append N events to a spool (as a
//!   probe job does, a host result at a time in batches), the spool delivers to
//!   Kafka, `portwatch project` (run by the script) folds and writes ClickHouse;
//!   done when ClickHouse holds N observation rows.
//! - `latency`: the same path at a steady rate; for each event, the time from its
//!   creation to the moment its row is queryable (polled every 50 ms).
//! - `round` / `verify`: sweeps of a large synthetic estate for the checkpoint
//!   benchmark (`bench/checkpoint.sh`), and the check that the projectors' port
//!   rows equal the fold of those sweeps.

#![allow(clippy::print_stdout)]

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use clap::{Parser, Subcommand};

mod attack;
mod pages;
mod rounds;
use portwatch_events::{Event, JobId, Origin, Task};
use portwatch_ingest::kafka::{ensure_topics, produce_keyed};
use portwatch_ingest::{EventLog, KafkaSettings, SpoolLog, SpoolSettings};
use portwatch_projections::{FoldConfig, State};
use portwatch_stores::{Batch, ClickHouseSettings, ClickHouseStore, ObservationRow};

/// Events per batch, as the projector's default `[projector] batch`.
const PROJECTOR_BATCH: usize = 20_000;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::FutureProducer;

#[derive(Debug, Parser)]
struct Cli {
    /// Broker address.
    #[arg(long, default_value = "127.0.0.1:9092")]
    brokers: String,
    /// ClickHouse HTTP URL.
    #[arg(long, default_value = "http://127.0.0.1:8123")]
    url: String,
    #[command(subcommand)]
    command: Cmd,
}

/// Where a pipeline run's events go: topics under `prefix`, rows in `database`,
/// spooled in `spool` on the way.
#[derive(Debug, clap::Args)]
struct PathArgs {
    #[arg(long)]
    prefix: String,
    #[arg(long)]
    database: String,
    #[arg(long)]
    spool: std::path::PathBuf,
}

impl PathArgs {
    /// The run's ClickHouse database and a spool delivering to its topics.
    fn open(&self, brokers: &str, url: &str) -> anyhow::Result<(ClickHouseStore, SpoolLog)> {
        let settings = kafka(brokers, &self.prefix, 6);
        let log = SpoolLog::open(
            SpoolSettings {
                path: self.spool.clone(),
                max_bytes: 4 << 30,
                produce_timeout: Duration::from_secs(30),
            },
            &settings,
        )?;
        Ok((clickhouse(url, &self.database), log))
    }
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Raw produce + consume rate.
    Kafka {
        #[arg(long)]
        prefix: String,
        #[arg(long, default_value_t = 6)]
        partitions: u32,
        #[arg(long)]
        events: usize,
        /// Records produced per wait for acknowledgements (the spool drains 2000).
        #[arg(long, default_value_t = 2000)]
        chunk: usize,
    },
    /// Consume an existing topic from the start with a fresh group.
    Consume {
        #[arg(long)]
        topic: String,
        #[arg(long)]
        events: usize,
    },
    /// Raw insert rate.
    Clickhouse {
        #[arg(long)]
        database: String,
        #[arg(long)]
        events: usize,
    },
    /// Spool → Kafka → projector → ClickHouse throughput.
    Pipeline {
        #[command(flatten)]
        path: PathArgs,
        #[arg(long)]
        events: usize,
    },
    /// End-to-end latency at a steady rate.
    Latency {
        #[command(flatten)]
        path: PathArgs,
        #[arg(long)]
        rate: u64,
        #[arg(long)]
        seconds: u64,
    },
    /// Seed `hosts × ports` open ports as one full scan of each host.
    SeedPorts {
        #[arg(long, value_enum)]
        target: SeedTarget,
        /// The events.db file, or the topic prefix.
        #[arg(long)]
        into: String,
        #[arg(long, default_value_t = 1000)]
        hosts: usize,
        #[arg(long, default_value_t = 100)]
        ports: usize,
    },
    /// One sweep (round) of `hosts` synthetic hosts to the observations topic.
    Round {
        #[arg(long)]
        prefix: String,
        #[arg(long, default_value_t = 12)]
        partitions: u32,
        #[arg(long)]
        hosts: usize,
        #[arg(long)]
        round: u32,
    },
    /// Compare the port rows in ClickHouse with the fold of rounds 1..=ROUNDS.
    Verify {
        #[arg(long)]
        database: String,
        #[arg(long)]
        hosts: usize,
        #[arg(long)]
        rounds: u32,
    },
    /// An unauthenticated attack on a running API (half-sent requests, wrong
    /// secrets), timed from a bystander.
    Attack(attack::Attack),
    /// Time the open-ports page's requests against a running API.
    Pages {
        /// Base URL of the API.
        #[arg(long)]
        api: String,
        /// A viewer's token.
        #[arg(long)]
        token: String,
        #[arg(long, default_value_t = 200)]
        requests: usize,
        /// A label for the deployment measured.
        #[arg(long)]
        deployment: String,
    },
}

/// Where a seed goes.
#[derive(Debug, Clone, clap::ValueEnum)]
enum SeedTarget {
    /// An embedded log file (`--into` is its events.db).
    Embedded,
    /// The observations topic under `--into` as the topic prefix.
    Kafka,
}

/// Distinct hosts the synthetic events are spread over.
const HOSTS: usize = 65_536;

/// The i-th synthetic event: a host scan summary of 8 high-risk ports, some open.
fn synth(origin: &Origin, i: usize) -> Event {
    let h = (i % HOSTS) as u32;
    let open: Vec<u16> = match i % 13 {
        0 => vec![22],
        1 => vec![80, 443],
        2 => vec![3306],
        _ => Vec::new(),
    };
    rounds::host_scan(origin, IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | h)), open)
}

fn origin() -> Origin {
    Origin {
        node: "bench".into(),
        job: JobId::new(),
        task: Task::HighRiskPorts,
    }
}

fn kafka(brokers: &str, prefix: &str, partitions: u32) -> KafkaSettings {
    KafkaSettings {
        consumer: BTreeMap::from([
            ("session.timeout.ms".to_string(), "2000".to_string()),
            ("heartbeat.interval.ms".to_string(), "500".to_string()),
        ]),
        ..KafkaSettings::new(brokers, prefix, partitions)
    }
}

fn clickhouse(url: &str, database: &str) -> ClickHouseStore {
    ClickHouseStore::new(ClickHouseSettings {
        url: url.into(),
        database: database.into(),
        user: None,
        password: None,
        ca_file: None,
        validation: false,
        compression: true,
    })
    .expect("no CA file, so no TLS set-up can fail")
}

fn line(value: serde_json::Value) {
    println!("{value}");
}

/// Observation rows of one job (each run has its own job id).
async fn count_rows(store: &ClickHouseStore, job: JobId) -> u64 {
    store
        .query_json(&format!(
            "SELECT count() AS n FROM observations WHERE job = '{job}'"
        ))
        .await
        .ok()
        .and_then(|rows| {
            rows.first()
                .and_then(|r| r["n"].as_str().and_then(|s| s.parse().ok()).or(r["n"].as_u64()))
        })
        .unwrap_or(0)
}

/// Receive up to `events` records; the count and the time from the first.
async fn consume_n(consumer: &StreamConsumer, events: usize) -> (usize, Duration) {
    let mut got = 0usize;
    let mut first: Option<Instant> = None;
    let deadline = Instant::now() + Duration::from_secs(300);
    while got < events && Instant::now() < deadline {
        if let Ok(Ok(_msg)) = tokio::time::timeout(Duration::from_secs(1), consumer.recv()).await {
            first.get_or_insert_with(Instant::now);
            got += 1;
        }
    }
    (got, first.map(|f| f.elapsed()).unwrap_or_default())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PWBENCH_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Cmd::Kafka {
            prefix,
            partitions,
            events,
            chunk,
        } => {
            let settings = kafka(&cli.brokers, &prefix, partitions);
            ensure_topics(&settings, Duration::from_secs(10)).await?;
            let origin = origin();
            let records: Vec<(String, String)> = (0..events)
                .map(|i| {
                    let e = synth(&origin, i);
                    (e.key(), e.to_json())
                })
                .collect();
            let bytes: usize = records.iter().map(|r| r.1.len()).sum();
            let producer: FutureProducer = settings.producer_config(Duration::from_secs(30)).create()?;
            let topic = settings.topics.observations.clone();
            let t0 = Instant::now();
            for chunk in records.chunks(chunk.max(1)) {
                let failed = produce_keyed(&producer, &topic, chunk)
                    .await
                    .into_iter()
                    .filter(|r| r.is_err())
                    .count();
                anyhow::ensure!(failed == 0, "{failed} records not acknowledged");
            }
            let produce = t0.elapsed();
            let consumer: StreamConsumer = settings.consumer_config(&format!("{prefix}ceiling")).create()?;
            consumer.subscribe(&[&topic])?;
            let (got, consume) = consume_n(&consumer, events).await;
            anyhow::ensure!(got == events, "consumed {got} of {events}");
            line(serde_json::json!({
                "measure": "kafka",
                "events": events,
                "avg_bytes": bytes / events.max(1),
                "produce_secs": produce.as_secs_f64(),
                "produce_per_sec": events as f64 / produce.as_secs_f64(),
                "consume_secs": consume.as_secs_f64(),
                "consume_per_sec": events as f64 / consume.as_secs_f64(),
            }));
        }
        Cmd::Consume { topic, events } => {
            let settings = kafka(&cli.brokers, "unused.", 1);
            let consumer: StreamConsumer = settings
                .consumer_config(&format!("consume-{}", JobId::new()))
                .create()?;
            consumer.subscribe(&[&topic])?;
            let (got, took) = consume_n(&consumer, events).await;
            line(serde_json::json!({
                "measure": "consume", "topic": topic, "events": got,
                "consume_per_sec": got as f64 / took.as_secs_f64(),
            }));
        }
        Cmd::Clickhouse { database, events } => {
            let store = clickhouse(&cli.url, &database);
            store.migrate().await?;
            let origin = origin();
            // (a) Exactly the rows the pipeline writes for these events, folded ahead
            //     of time and written batch by batch as the projector does: the cost
            //     ClickHouse alone puts on every event.
            let synthetic: Vec<Event> = (0..events).map(|i| synth(&origin, i)).collect();
            let mut state = State::new(FoldConfig::default());
            let mut batches = Vec::new();
            for (c, chunk) in synthetic.chunks(PROJECTOR_BATCH).enumerate() {
                let mut batch = Batch::new(true);
                for (k, e) in chunk.iter().enumerate() {
                    let changes = state.apply(e);
                    let offset = (c * PROJECTOR_BATCH + k) as u64;
                    batch.add((offset % 6) as u32, offset, e, e.to_json(), changes);
                }
                batches.push(batch);
            }
            let pipeline_row_count: usize = batches.iter().map(Batch::rows).sum();
            let t0 = Instant::now();
            for batch in &batches {
                store.write(batch).await?;
            }
            let pipeline_rows = t0.elapsed();
            // (b) For reference: observation rows alone, the widest table.
            let raw_db = format!("{database}_raw");
            let store = clickhouse(&cli.url, &raw_db);
            store.migrate().await?;
            let rows: Vec<ObservationRow> = (0..events)
                .map(|i| ObservationRow::new(&synth(&origin, i), (i % 6) as u32, i as u64))
                .collect();
            let client = clickhouse::Client::default()
                .with_url(&cli.url)
                .with_database(&raw_db)
                .with_validation(false);
            let t0 = Instant::now();
            for chunk in rows.chunks(20_000) {
                let mut insert = client.insert::<ObservationRow>("observations").await?;
                for row in chunk {
                    insert.write(row).await?;
                }
                insert.end().await?;
            }
            let took = t0.elapsed();
            anyhow::ensure!(
                count_rows(&store, origin.job).await == events as u64,
                "row count after insert"
            );
            line(serde_json::json!({
                "measure": "clickhouse",
                "events": events,
                "pipeline_rows": pipeline_row_count,
                "pipeline_rows_secs": pipeline_rows.as_secs_f64(),
                "events_per_sec": events as f64 / pipeline_rows.as_secs_f64(),
                "observation_rows_secs": took.as_secs_f64(),
                "observation_rows_per_sec": events as f64 / took.as_secs_f64(),
            }));
        }
        Cmd::Pipeline { path, events } => {
            let (store, log) = path.open(&cli.brokers, &cli.url)?;
            let origin = origin();
            let all: Vec<Event> = (0..events).map(|i| synth(&origin, i)).collect();
            let t0 = Instant::now();
            for batch in all.chunks(256) {
                log.append(batch).context("spool append")?;
            }
            let appended = t0.elapsed();
            let deadline = Instant::now() + Duration::from_secs(600);
            let mut rows = 0;
            while rows < events as u64 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
                rows = count_rows(&store, origin.job).await;
            }
            let took = t0.elapsed();
            anyhow::ensure!(rows >= events as u64, "only {rows} of {events} rows arrived");
            line(serde_json::json!({
                "measure": "pipeline",
                "events": events,
                "spool_append_secs": appended.as_secs_f64(),
                "end_to_end_secs": took.as_secs_f64(),
                "events_per_sec": events as f64 / took.as_secs_f64(),
            }));
            log.close();
        }
        Cmd::SeedPorts {
            target,
            into,
            hosts,
            ports,
        } => {
            let events = pages::events(hosts, ports);
            let started = Instant::now();
            match target {
                SeedTarget::Embedded => pages::seed_embedded(std::path::Path::new(&into), &events)?,
                SeedTarget::Kafka => {
                    let settings = kafka(&cli.brokers, &into, 6);
                    ensure_topics(&settings, Duration::from_secs(10)).await?;
                    pages::seed_kafka(settings, &events)?;
                }
            }
            line(serde_json::json!({
                "measure": "seed",
                "hosts": hosts,
                "open_ports": hosts * ports,
                "seconds": started.elapsed().as_secs_f64(),
            }));
        }
        Cmd::Round {
            prefix,
            partitions,
            hosts,
            round,
        } => line(rounds::produce(&kafka(&cli.brokers, &prefix, partitions), hosts, round).await?),
        Cmd::Verify {
            database,
            hosts,
            rounds,
        } => line(rounds::verify(&clickhouse(&cli.url, &database), hosts, rounds).await?),
        Cmd::Attack(a) => line(attack::run(a).await?),
        Cmd::Pages {
            api,
            token,
            requests,
            deployment,
        } => {
            for mut result in pages::latency(&api, &token, requests).await? {
                result["deployment"] = deployment.clone().into();
                line(result);
            }
        }
        Cmd::Latency { path, rate, seconds } => {
            let (store, log) = path.open(&cli.brokers, &cli.url)?;
            let log = std::sync::Arc::new(log);
            let total = (rate * seconds) as usize;
            // Every SAMPLE-th event is timed: the writer hands (id, created ms) over,
            // the observer polls ClickHouse for those ids every 50 ms.
            const SAMPLE: usize = 50;
            let handed: std::sync::Arc<std::sync::Mutex<Vec<(String, i64)>>> = Default::default();
            let origin = origin();
            let job = origin.job;
            let writer = {
                let log = log.clone();
                let handed = handed.clone();
                tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
                    let t0 = Instant::now();
                    let mut sent = 0usize;
                    while sent < total {
                        let due = ((t0.elapsed().as_secs_f64() * rate as f64) as usize).min(total);
                        if due > sent {
                            let batch: Vec<Event> = (sent..due).map(|i| synth(&origin, i)).collect();
                            log.append(&batch)?;
                            let mut h = handed.lock().unwrap_or_else(|p| p.into_inner());
                            for (k, e) in batch.iter().enumerate() {
                                if (sent + k).is_multiple_of(SAMPLE) {
                                    h.push((e.id.to_string(), e.ts.timestamp_millis()));
                                }
                            }
                            sent = due;
                        }
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Ok(())
                })
            };
            let samples = total.div_ceil(SAMPLE);
            let mut pending: HashMap<String, i64> = HashMap::new();
            let mut lat: Vec<i64> = Vec::with_capacity(samples);
            let deadline = Instant::now() + Duration::from_secs(seconds + 120);
            while lat.len() < samples && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
                pending.extend(std::mem::take(
                    &mut *handed.lock().unwrap_or_else(|p| p.into_inner()),
                ));
                if pending.is_empty() {
                    continue;
                }
                let ids: Vec<String> = pending.keys().map(|k| format!("'{k}'")).collect();
                let rows = store
                    .query_json(&format!(
                        "SELECT id FROM observations WHERE id IN ({})",
                        ids.join(",")
                    ))
                    .await
                    .unwrap_or_default();
                let now = Utc::now().timestamp_millis();
                for r in rows {
                    if let Some(created) = r["id"].as_str().and_then(|id| pending.remove(id)) {
                        lat.push(now - created);
                    }
                }
            }
            writer.await??;
            anyhow::ensure!(
                lat.len() == samples,
                "saw {} of {} sampled rows",
                lat.len(),
                samples
            );
            let mut rows = 0;
            while rows < total as u64 && Instant::now() < deadline {
                rows = count_rows(&store, job).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            anyhow::ensure!(rows == total as u64, "{rows} of {total} rows arrived");
            lat.sort_unstable();
            let q = |p: f64| lat[((lat.len() as f64 - 1.0) * p).round() as usize];
            line(serde_json::json!({
                "measure": "latency",
                "rate_per_sec": rate,
                "events": total,
                "samples": samples,
                "p50_ms": q(0.50),
                "p90_ms": q(0.90),
                "p99_ms": q(0.99),
                "max_ms": q(1.0),
                "poll_interval_ms": 50,
            }));
            log.close();
        }
    }
    Ok(())
}
