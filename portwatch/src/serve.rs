//! Serving the one API (`portwatch_api`) from a role: the same router over the
//! role's read model, with the config's assets and schedule.

use std::net::SocketAddr;
use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use portwatch_api::report::{Figures, FIGURES_MAX_AGE};
use portwatch_api::{ApiContext, Auth, ReadModel, ScheduledTask};
use portwatch_events::Task;
use tokio::sync::watch;

use crate::config::Config;
use portwatch_work::schedule::{cadence, implemented};

/// Every schedulable task with its configured cadence.
pub fn schedule(cfg: &Config) -> Vec<ScheduledTask> {
    Task::SCHEDULED
        .iter()
        .map(|&task| {
            let configured = cfg.schedule.get(&task).map(|d| cadence(*d));
            ScheduledTask {
                task,
                cadence: configured.clone(),
                configured,
                set_by: None,
                set_at: None,
                implemented: implemented(task),
            }
        })
        .collect()
}

/// The estate as the planner sees it. Scale-out: each zone of the assets with its
/// addresses; embedded: one zone, `default`, holding them all (its one process
/// probes every zone).
pub fn estate(cfg: &Config, scaleout: bool) -> portwatch_work::Estate {
    let mut zones = portwatch_work::zone_sizes(&cfg.asset_map(), cfg.scope.exclusions());
    if !scaleout {
        let all = zones.iter().map(|(_, n)| *n).fold(0u64, u64::saturating_add);
        zones = vec![(crate::config::DEFAULT_ZONE.to_string(), all)];
    }
    portwatch_work::Estate {
        zones,
        rate: f64::from(cfg.scan.rate.get()),
        high_risk_ports: cfg.scan.high_risk_ports.len() as u64,
        liveness_ports: cfg.scan.liveness_ports.len() as u64,
    }
}

/// The addresses of this machine (of its network namespace): every interface's, and
/// the whole network of a loopback interface (all of 127.0.0.0/8 is local on Linux).
pub fn local_addresses() -> Vec<ipnet::IpNet> {
    let mut nets = Vec::new();
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        tracing::warn!(
            "cannot list this machine's addresses; [control] protect covers only the addresses it names"
        );
        return nets;
    };
    for a in addrs {
        let ip = a.address.as_ref().and_then(|s| {
            s.as_sockaddr_in()
                .map(|v4| std::net::IpAddr::V4(v4.ip()))
                .or_else(|| s.as_sockaddr_in6().map(|v6| std::net::IpAddr::V6(v6.ip())))
        });
        let Some(ip) = ip else { continue };
        let net = if ip.is_loopback() && ip.is_ipv4() {
            ipnet::IpNet::new(ip, 8).map(|n| n.trunc()).ok()
        } else {
            Some(ipnet::IpNet::from(ip))
        };
        nets.extend(net);
    }
    nets.sort();
    nets.dedup();
    nets
}

/// The limits of approvals and blocks: the config's, with the API's own port added
/// to `[control] protect`, and entries without addresses meaning this machine's.
pub fn bounds(cfg: &Config) -> portwatch_projections::bounds::Bounds {
    use portwatch_projections::bounds::{Bounds, Protected};
    let local = local_addresses();
    let api_ip = ipnet::IpNet::from(cfg.api_listen.ip());
    let mut protect: Vec<Protected> = cfg
        .control
        .protect
        .iter()
        .map(|p| Protected {
            nets: p.net.map_or_else(|| local.clone(), |n| vec![n]),
            port: p.port,
            entry: p.text.clone(),
        })
        .collect();
    // The API's own port, on the address it listens on and on this machine's.
    let mut nets = local;
    if !cfg.api_listen.ip().is_unspecified() {
        nets.push(api_ip);
    }
    protect.push(Protected {
        nets,
        port: cfg.api_listen.port(),
        entry: format!("{} (the API's own port, always protected)", cfg.api_listen.port()),
    });
    Bounds {
        max_addresses: u128::from(cfg.approvals_max_addresses),
        max_block_secs: cfg.control.max_duration.as_secs(),
        protect,
    }
}

/// The API context of `cfg` over `read`, with the ledger; console sessions are
/// signed with a key derived from the ledger's, so that they outlive the process
/// and every API process of the deployment accepts them.
pub fn context(
    cfg: &Config,
    scaleout: bool,
    read: Arc<dyn ReadModel>,
    ledger: portwatch_ledger::Handle,
    metrics: PrometheusHandle,
) -> anyhow::Result<ApiContext> {
    let session_key = portwatch_ledger::Key::load_or_create(&cfg.ledger_key_path())?
        .derive(portwatch_api::session::KEY_PURPOSE);
    let assets = Arc::new(cfg.asset_map());
    let figures = Arc::new(Figures::new(
        read.clone(),
        ledger.clone(),
        assets.clone(),
        FIGURES_MAX_AGE,
    ));
    Ok(ApiContext {
        read,
        ledger,
        auth: Arc::new(
            Auth::new(cfg.anonymous_read)
                .failures_per_minute(cfg.auth_failures_per_minute)
                .issuing_for_others(cfg.admin_may_issue_for_others)
                .secure_cookies(cfg.api.tls.is_some() || !cfg.api_listen.ip().is_loopback())
                .session_key(session_key),
        ),
        bounds: Arc::new(bounds(cfg)),
        assets,
        schedule: Arc::new(schedule(cfg)),
        estate: Arc::new(estate(cfg, scaleout)),
        metrics,
        figures,
    })
}

/// The API server's limits: the config's, with connections capped at a quarter of
/// the open-file limit, so that however many clients come, the scanner keeps the
/// descriptors it needs (its raw sockets, its connect probes).
pub fn server_limits(cfg: &Config) -> portwatch_api::server::Limits {
    let nofile = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map(|(soft, _)| soft)
        .unwrap_or(1024);
    let cap = usize::try_from(nofile / 4).unwrap_or(usize::MAX).max(8);
    let max_connections = cfg.api.max_connections.min(cap);
    if max_connections < cfg.api.max_connections {
        tracing::warn!(
            configured = cfg.api.max_connections,
            serving = max_connections,
            open_file_limit = nofile,
            "api.max_connections capped at a quarter of the open-file limit (the rest is the scanner's)"
        );
    }
    portwatch_api::server::Limits {
        header_timeout: cfg.api.header_timeout,
        request_timeout: cfg.api.request_timeout,
        max_connections,
        per_client: (max_connections / 4).clamp(1, 32),
    }
}

/// Bind `listen` now (so that a busy port is an error at start, as is a bad
/// certificate), and return the server future, which runs until `stop` is set.
pub async fn bind(
    listen: SocketAddr,
    cfg: &Config,
    ctx: ApiContext,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<impl std::future::Future<Output = std::io::Result<()>>> {
    let tls = match &cfg.api.tls {
        None => None,
        Some((cert, key)) => {
            let read = |p: &std::path::Path, k: &str| {
                std::fs::read(p).map_err(|e| anyhow::anyhow!("api.{k}: cannot read {}: {e}", p.display()))
            };
            let acceptor =
                portwatch_api::server::tls_acceptor(&read(cert, "tls_cert")?, &read(key, "tls_key")?)
                    .map_err(|e| anyhow::anyhow!("api.{e}"))?;
            Some(acceptor)
        }
    };
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
            " (another program listens there: set [api] listen in the config or pass --listen IP:PORT)"
        } else {
            ""
        };
        anyhow::anyhow!("api.listen: cannot listen on {listen}: {e}{hint}")
    })?;
    let limits = server_limits(cfg);
    tracing::info!(
        listen = %listen,
        https = tls.is_some(),
        max_connections = limits.max_connections,
        per_client = limits.per_client,
        header_timeout = ?limits.header_timeout,
        request_timeout = ?limits.request_timeout,
        "API serving"
    );
    let app = portwatch_api::router(ctx);
    Ok(portwatch_api::server::serve(listener, app, limits, tls, stop))
}
