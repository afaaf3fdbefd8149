//! Serving the one API (`portwatch_api`) from a role: the same router over the
//! role's read model, with the config's assets and schedule.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use metrics_exporter_prometheus::PrometheusHandle;
use portwatch_api::report::{Figures, FIGURES_MAX_AGE};
use portwatch_api::{ApiContext, Auth, ReadModel, ScheduledTask};
use portwatch_events::Task;
use portwatch_ingest::Journal;
use portwatch_projections::Notifier;
use tokio::sync::watch;

use crate::config::Config;
use crate::control::scheduler::{cadence, implemented};

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

/// The API context of `cfg` over `read`, with the journal and its fold.
pub fn context(
    cfg: &Config,
    read: Arc<dyn ReadModel>,
    journal: Arc<dyn Journal>,
    notifier: Arc<RwLock<Notifier>>,
    metrics: PrometheusHandle,
) -> ApiContext {
    let assets = Arc::new(cfg.asset_map());
    let figures = Arc::new(Figures::new(
        read.clone(),
        notifier.clone(),
        assets.clone(),
        FIGURES_MAX_AGE,
    ));
    ApiContext {
        read,
        notifier,
        journal,
        auth: Arc::new(Auth::new(cfg.anonymous_read).issuing_for_others(cfg.admin_may_issue_for_others)),
        bounds: Arc::new(bounds(cfg)),
        assets,
        schedule: Arc::new(schedule(cfg)),
        metrics,
        figures,
    }
}

/// Bind `listen` now (so that a busy port is an error at start), and return the
/// server future, which runs until `stop` is set.
pub async fn bind(
    listen: SocketAddr,
    ctx: ApiContext,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<impl std::future::Future<Output = std::io::Result<()>>> {
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
            " (another program listens there: set [api] listen in the config or pass --listen IP:PORT)"
        } else {
            ""
        };
        anyhow::anyhow!("api.listen: cannot listen on {listen}: {e}{hint}")
    })?;
    let app = portwatch_api::router(ctx);
    Ok(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await
    })
}
