//! The open-ports page with a big store: seed `hosts × ports` open ports as host
//! scans (into an embedded log or the observations topic), then time the requests
//! the console's open-ports page makes against a running API.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use chrono::Utc;
use portwatch_events::{Event, HostScan, JobId, Observation, Origin, OutcomeCounts, PortSet, Proto, Task};
use portwatch_ingest::{EmbeddedLog, EventLog, KafkaLog, KafkaSettings};

/// The address of the i-th seeded host: 10.0.0.1 onwards, 250 per /24.
pub(crate) fn host(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, (i / 250) as u8, (i % 250 + 1) as u8)
}

/// One full scan of every seeded host: each has Redis (a high-risk port) and
/// `ports - 1` other ports open.
pub(crate) fn events(hosts: usize, ports: usize) -> Vec<Event> {
    let origin = Origin {
        node: "bench".into(),
        job: JobId::new(),
        task: Task::FullPorts,
    };
    let mut open: Vec<u16> = (0..ports.saturating_sub(1)).map(|p| 20_000 + p as u16).collect();
    open.push(6379);
    open.sort_unstable();
    let now = Utc::now();
    (0..hosts)
        .map(|i| {
            Event::new(
                &origin,
                now,
                Observation::HostScan(HostScan {
                    ip: host(i).into(),
                    proto: Proto::Tcp,
                    started_at: now,
                    covered: PortSet::parse("1-65535").expect("ports"),
                    counts: OutcomeCounts {
                        open: open.len() as u32,
                        closed: 65_535 - open.len() as u32,
                        ..OutcomeCounts::default()
                    },
                    open: open.clone(),
                    wildcard: false,
                    unverified: 0,
                }),
            )
        })
        .collect()
}

/// Append the seed to an embedded log.
pub(crate) fn seed_embedded(path: &std::path::Path, events: &[Event]) -> anyhow::Result<()> {
    let log = EmbeddedLog::open(path)?;
    for chunk in events.chunks(500) {
        log.append(chunk)?;
    }
    Ok(())
}

/// Produce the seed to the observations topic.
pub(crate) fn seed_kafka(settings: KafkaSettings, events: &[Event]) -> anyhow::Result<()> {
    let log = KafkaLog::open(settings, Duration::from_secs(30))?;
    for chunk in events.chunks(500) {
        log.append(chunk)?;
    }
    Ok(())
}

/// Milliseconds at quantile `q` of sorted `samples`.
fn quantile(samples: &[f64], q: f64) -> f64 {
    let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
    samples.get(i).copied().unwrap_or(f64::NAN)
}

struct Api {
    client: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    /// One GET: (milliseconds, rows, next cursor).
    async fn get(&self, path: &str) -> anyhow::Result<(f64, usize, Option<String>)> {
        let started = Instant::now();
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await?;
        let status = response.status();
        let next = response
            .headers()
            .get("x-next-cursor")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body: serde_json::Value = response.json().await?;
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        anyhow::ensure!(status.is_success(), "{path}: {status} {body}");
        Ok((ms, body.as_array().map_or(0, Vec::len), next))
    }
}

/// Time the page's requests against the API at `base`; one JSON object per kind.
pub(crate) async fn latency(
    base: &str,
    token: &str,
    requests: usize,
) -> anyhow::Result<Vec<serde_json::Value>> {
    // The workspace builds reqwest with rustls but no crypto provider chosen: plain
    // HTTP here, but the client wants one all the same.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let api = Api {
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?,
        base: base.trim_end_matches('/').to_string(),
        token: token.to_string(),
    };
    // A cursor near the end, for a deep page: walk with big pages once.
    let mut cursor: Option<String> = None;
    let mut total = 0;
    let mut last_cursor = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/ports?limit=10000&cursor={c}"),
            None => "/api/v1/ports?limit=10000".to_string(),
        };
        let (_, rows, next) = api.get(&path).await?;
        total += rows;
        if next.is_none() {
            break;
        }
        last_cursor = cursor.clone();
        cursor = next;
    }
    // (A store of one big page has no page near the end: the first page then.)
    let deep = last_cursor.map_or(String::new(), |c| format!("&cursor={c}"));
    let owner_ip = host(0);
    let kinds: Vec<(&str, String)> = vec![
        ("first page", "/api/v1/ports?limit=50".into()),
        ("deep page", format!("/api/v1/ports?limit=50{deep}")),
        ("risk filter", "/api/v1/ports?risk=high_risk_port&limit=50".into()),
        ("owner filter", "/api/v1/ports?owner=db-team&limit=50".into()),
        ("one host", format!("/api/v1/ports?ip={owner_ip}&limit=50")),
        ("alerting only", "/api/v1/ports?approved=false&limit=50".into()),
    ];
    let mut out = Vec::new();
    for (kind, path) in kinds {
        let mut samples = Vec::with_capacity(requests);
        let mut rows = 0;
        for _ in 0..requests {
            let (ms, n, _) = api.get(&path).await?;
            samples.push(ms);
            rows = n;
        }
        out.push(summary(kind, &mut samples, rows, total));
    }
    // The dashboard's report: its figures fold every episode and port row
    // (O(store)); they are computed at most once per 5 s for every request meanwhile,
    // so back-to-back requests mostly find them ready and the slowest ones are the
    // computations.
    let mut samples = Vec::new();
    for _ in 0..requests {
        let started = Instant::now();
        let response = api
            .client
            .get(format!("{}/api/v1/report?by=risk&days=30", api.base))
            .bearer_auth(&api.token)
            .send()
            .await?;
        anyhow::ensure!(response.status().is_success(), "report: {}", response.status());
        let _ = response.bytes().await?;
        samples.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    out.push(summary(
        "dashboard report (figures <= 5 s old)",
        &mut samples,
        0,
        total,
    ));
    // What one computation of the figures took, last time (the gauge on /metrics).
    let metrics = api
        .client
        .get(format!("{}/metrics", api.base))
        .send()
        .await?
        .text()
        .await?;
    let computed = metrics
        .lines()
        .find(|l| l.starts_with("portwatch_report_compute_seconds "))
        .and_then(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .ok_or_else(|| anyhow::anyhow!("no portwatch_report_compute_seconds on /metrics"))?;
    out.push(summary(
        "report figures computed (every row)",
        &mut [computed * 1000.0],
        0,
        total,
    ));
    // Walking page after page, as "next page" does.
    let mut samples = Vec::with_capacity(requests);
    let mut cursor: Option<String> = None;
    for _ in 0..requests {
        let path = match &cursor {
            Some(c) => format!("/api/v1/ports?limit=50&cursor={c}"),
            None => "/api/v1/ports?limit=50".to_string(),
        };
        let (ms, _, next) = api.get(&path).await?;
        samples.push(ms);
        cursor = next;
    }
    out.push(summary("next page, walking", &mut samples, 50, total));
    Ok(out)
}

fn summary(kind: &str, samples: &mut [f64], rows: usize, total: usize) -> serde_json::Value {
    samples.sort_by(f64::total_cmp);
    serde_json::json!({
        "measure": "ports_page",
        "kind": kind,
        "requests": samples.len(),
        "rows": rows,
        "open_ports": total,
        "p50_ms": (quantile(samples, 0.5) * 100.0).round() / 100.0,
        "p99_ms": (quantile(samples, 0.99) * 100.0).round() / 100.0,
        "max_ms": (samples.last().copied().unwrap_or(f64::NAN) * 100.0).round() / 100.0,
    })
}
