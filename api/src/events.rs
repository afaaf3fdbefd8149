//! The raw history of a host or of one of its ports: the observation events as the
//! probes recorded them, newest first, each with a line a person can read. The
//! stores keep one host's events together; which of them concern a port is decided
//! here, once for both deployments.

use std::collections::HashMap;
use std::net::IpAddr;

use axum::extract::{Query, State};
use axum::response::IntoResponse;
use portwatch_events::{Event, Observation, Proto, Task, Timestamp};
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, ErrorBody};
use crate::params::Params;
use crate::read::{EventCursor, StoredEvent};
use crate::routes::paged;
use crate::ApiContext;

/// Events per page when `limit` is not given.
const DEFAULT_EVENTS: usize = 100;
/// The most events one page may hold.
const MAX_EVENTS: usize = 1000;
/// The most recorded events one request reads while looking for those of a port:
/// a page of a rarely scanned port in a busy host's history may come back short,
/// with the cursor to read on.
const READ_BUDGET: usize = 20_000;
/// Recorded events asked of the store at a time.
const CHUNK: usize = 500;

/// Filters and paging of `GET /api/v1/events`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct EventParams {
    /// The host (required).
    #[param(value_type = String, example = "10.1.0.7")]
    ip: String,
    /// Only the events that say something about this port: scans that covered it,
    /// its details, and the host's liveness.
    #[param(minimum = 1, maximum = 65535)]
    port: Option<u16>,
    /// The port's protocol (default tcp).
    #[param(inline)]
    proto: Option<Proto>,
    /// Only events of this kind.
    #[param(inline)]
    kind: Option<EventKind>,
    /// Events per page (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// The `X-Next-Cursor` header of the previous page.
    cursor: Option<String>,
}

/// The kinds of observation event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum EventKind {
    /// Whether the host answered.
    HostLiveness,
    /// One scan of the host: the ports it covered and those it found open.
    HostScan,
    /// What one open port is.
    PortDetail,
}

impl EventKind {
    fn of(event: &Event) -> Self {
        match event.observation {
            Observation::HostLiveness(_) => Self::HostLiveness,
            Observation::HostScan(_) => Self::HostScan,
            Observation::PortDetail(_) => Self::PortDetail,
        }
    }
}

/// One observation event as recorded, and what it says.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct EventView {
    /// Event id.
    pub id: String,
    /// When the observation was complete.
    #[schema(value_type = String, format = DateTime)]
    pub ts: Timestamp,
    /// host_liveness, host_scan or port_detail.
    pub kind: &'static str,
    /// Probe node that made it.
    pub node: String,
    /// The job it belongs to.
    pub job: String,
    /// The task the job ran.
    pub task: Task,
    /// When a port was asked for: whether this event saw it open (absent for
    /// liveness, and for scans of a host that answers on every port).
    pub port_open: Option<bool>,
    /// What it says, in a line.
    pub summary: String,
    /// The event exactly as recorded (events/SCHEMA.md).
    #[schema(value_type = Object)]
    pub event: serde_json::Value,
}

/// What a request asks for.
#[derive(Debug, Clone, Copy)]
struct Wanted {
    port: Option<(u16, Proto)>,
    kind: Option<EventKind>,
}

impl Wanted {
    /// Whether `event` belongs in the answer, and if a port was asked, whether it
    /// saw the port open.
    fn judge(&self, event: &Event) -> Option<Option<bool>> {
        if self.kind.is_some_and(|k| k != EventKind::of(event)) {
            return None;
        }
        let Some((port, proto)) = self.port else {
            return Some(None);
        };
        match &event.observation {
            Observation::HostLiveness(_) => Some(None),
            Observation::HostScan(s) if s.proto != proto => None,
            Observation::HostScan(s) if s.wildcard => Some(None),
            Observation::HostScan(s) if s.open.contains(&port) => Some(Some(true)),
            Observation::HostScan(s) => s.covered.contains(port).then_some(Some(false)),
            Observation::PortDetail(d) => (d.port == port && d.proto == proto).then_some(Some(true)),
        }
    }
}

/// The line that says what `event` saw.
pub(crate) fn summary(event: &Event) -> String {
    match &event.observation {
        Observation::HostLiveness(l) => {
            let answered: Vec<String> = l
                .probes
                .iter()
                .filter(|p| {
                    matches!(
                        p.outcome,
                        portwatch_events::ProbeOutcome::Open | portwatch_events::ProbeOutcome::Closed
                    )
                })
                .map(|p| {
                    let method = serde_json::to_value(p.method)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default();
                    match (p.port, p.rtt_ms) {
                        (Some(port), Some(rtt)) => format!("{method} {port} in {rtt:.1} ms"),
                        (Some(port), None) => format!("{method} {port}"),
                        (None, Some(rtt)) => format!("{method} in {rtt:.1} ms"),
                        (None, None) => method,
                    }
                })
                .collect();
            if l.alive {
                format!("alive: {}", answered.join(", "))
            } else {
                format!("no answer to {} probe(s)", l.probes.len())
            }
        }
        Observation::HostScan(s) if s.wildcard => format!(
            "{} scan: the host answers on every port ({} unverified), nothing proven",
            s.proto.as_str(),
            s.unverified
        ),
        Observation::HostScan(s) => {
            let shown: Vec<String> = s.open.iter().take(20).map(u16::to_string).collect();
            let more = s.open.len().saturating_sub(shown.len());
            let open = match (s.open.len(), more) {
                (0, _) => "none open".to_string(),
                (_, 0) => format!("open {}", shown.join(", ")),
                _ => format!("open {} and {more} more", shown.join(", ")),
            };
            format!("{} scan of {} port(s): {open}", s.proto.as_str(), s.covered.len())
        }
        Observation::PortDetail(d) => {
            let evidence = serde_json::to_value(d.evidence)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            let mut line = format!("{}/{} open ({evidence})", d.port, d.proto.as_str());
            let what: Vec<&str> = [&d.service, &d.product, &d.version]
                .into_iter()
                .filter_map(|v| v.as_deref())
                .collect();
            if !what.is_empty() {
                line.push_str(": ");
                line.push_str(&what.join(" "));
            }
            if let Some(class) = d.class {
                line.push_str(&format!("; {}", class.as_str()));
            }
            if !d.panels.is_empty() {
                line.push_str(&format!("; panels {}", d.panels.join(", ")));
            }
            if let Some(title) = &d.title {
                line.push_str(&format!("; title \"{title}\""));
            }
            if let Some(subject) = &d.tls_subject {
                line.push_str(&format!("; TLS {subject}"));
            }
            line
        }
    }
}

fn view(event: &Event, port_open: Option<bool>) -> EventView {
    EventView {
        id: event.id.to_string(),
        ts: event.ts,
        kind: event.observation.kind(),
        node: event.node.clone(),
        job: event.job.to_string(),
        task: event.task,
        port_open,
        summary: summary(event),
        event: serde_json::to_value(event).unwrap_or_default(),
    }
}

/// Read one page: the store's events of the host, newest first, kept when they
/// concern what was asked, until the page is full or the read budget is spent.
/// The next cursor is the last event *read*, so that nothing is read twice.
async fn page(
    ctx: &ApiContext,
    ip: IpAddr,
    wanted: Wanted,
    mut after: Option<EventCursor>,
    limit: usize,
) -> Result<(Vec<EventView>, Option<EventCursor>), ApiError> {
    let mut views = Vec::new();
    let mut read = 0;
    loop {
        let chunk = CHUNK.max(limit + 1).min(READ_BUDGET - read);
        let stored = ctx.read.observations(ip, after.as_ref(), chunk).await?;
        let exhausted = stored.len() < chunk;
        read += stored.len();
        for StoredEvent { at, event } in stored {
            let event = match event {
                Ok(event) => event,
                Err(reason) => {
                    tracing::warn!(%ip, cursor = %at, %reason, "a recorded event does not decode; left out of the history");
                    after = Some(at);
                    continue;
                }
            };
            if let Some(port_open) = wanted.judge(&event) {
                if views.len() == limit {
                    // A page full and one more to come: continue after the last shown.
                    return Ok((views, after));
                }
                views.push(view(&event, port_open));
            }
            after = Some(at);
        }
        if exhausted {
            return Ok((views, None));
        }
        if read >= READ_BUDGET {
            return Ok((views, after));
        }
    }
}

/// The observation events of a host, or of one of its ports, newest first.
#[utoipa::path(get, path = "/api/v1/events", tag = "findings", params(EventParams), responses(
    (status = 200, description = "Events, newest first. A page may hold fewer than `limit` when few of the host's events concern the port: follow `X-Next-Cursor` to the end.", body = [EventView], headers(("x-next-cursor" = String, description = "Cursor of the next page, when there is one."))),
    (status = 400, description = "A parameter is wrong; the message names it.", body = ErrorBody),
    (status = 503, description = "The store did not answer.", body = ErrorBody),
))]
pub(crate) async fn events(
    State(ctx): State<ApiContext>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<impl IntoResponse, ApiError> {
    let p = Params::of::<EventParams>(q)?;
    let ip = p
        .ip()?
        .ok_or_else(|| ApiError::bad_request("ip: required (the host whose events to list)".to_string()))?;
    let proto = p.proto()?.unwrap_or(Proto::Tcp);
    let wanted = Wanted {
        port: p.port()?.map(|port| (port, proto)),
        kind: p.parsed::<EventKind>("kind")?,
    };
    let limit = p.limit_within(DEFAULT_EVENTS, MAX_EVENTS)?;
    let after = p.cursor()?.map(|c| {
        c.parse::<EventCursor>()
            .map_err(|()| ApiError::bad_request(format!("cursor: `{c}` is not a cursor this API gave out")))
    });
    let after = after.transpose()?;
    let (views, next) = page(&ctx, ip, wanted, after, limit).await?;
    Ok(paged(views, next.map(|c| c.to_string())))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use portwatch_events::{
        Evidence, HostLiveness, HostScan, JobId, Origin, OutcomeCounts, PortDetail, PortSet,
    };

    fn event(observation: Observation) -> Event {
        let origin = Origin {
            node: "n1".into(),
            job: JobId::new(),
            task: Task::FullPorts,
        };
        Event::new(&origin, chrono::Utc::now(), observation)
    }

    fn scan(covered: &str, open: &[u16], wildcard: bool) -> Event {
        event(Observation::HostScan(HostScan {
            ip: "10.0.0.1".parse().unwrap(),
            proto: Proto::Tcp,
            started_at: chrono::Utc::now(),
            covered: if covered.is_empty() {
                PortSet::empty()
            } else {
                PortSet::parse(covered).unwrap()
            },
            open: open.to_vec(),
            counts: OutcomeCounts::default(),
            wildcard,
            unverified: if wildcard { 9 } else { 0 },
        }))
    }

    fn detail(port: u16) -> Event {
        event(Observation::PortDetail(PortDetail {
            ip: "10.0.0.1".parse().unwrap(),
            port,
            proto: Proto::Tcp,
            evidence: Evidence::Service,
            rtt_ms: None,
            service: Some("redis".into()),
            product: Some("Redis".into()),
            version: Some("7.0.15".into()),
            banner: None,
            class: None,
            panels: vec![],
            title: None,
            tls_subject: None,
        }))
    }

    #[test]
    fn a_port_is_told_by_the_scans_that_covered_it_and_its_own_details() {
        let of_6379 = Wanted {
            port: Some((6379, Proto::Tcp)),
            kind: None,
        };
        assert_eq!(
            of_6379.judge(&scan("1-10000", &[22, 6379], false)),
            Some(Some(true))
        );
        assert_eq!(of_6379.judge(&scan("1-10000", &[22], false)), Some(Some(false)));
        assert_eq!(
            of_6379.judge(&scan("1-1024", &[22], false)),
            None,
            "not covered: says nothing"
        );
        assert_eq!(
            of_6379.judge(&scan("", &[], true)),
            Some(None),
            "wildcard: proves nothing"
        );
        assert_eq!(of_6379.judge(&detail(6379)), Some(Some(true)));
        assert_eq!(of_6379.judge(&detail(22)), None);
        let liveness = event(Observation::HostLiveness(HostLiveness {
            ip: "10.0.0.1".parse().unwrap(),
            alive: false,
            probes: vec![],
        }));
        assert_eq!(of_6379.judge(&liveness), Some(None));
        let udp = Wanted {
            port: Some((6379, Proto::Udp)),
            kind: None,
        };
        assert_eq!(udp.judge(&scan("1-10000", &[6379], false)), None);
        let details_only = Wanted {
            port: None,
            kind: Some(EventKind::PortDetail),
        };
        assert_eq!(details_only.judge(&liveness), None);
        assert_eq!(details_only.judge(&detail(22)), Some(None));
    }

    #[test]
    fn summaries_say_what_was_seen() {
        assert_eq!(
            summary(&scan("1-1024", &[22, 80], false)),
            "tcp scan of 1024 port(s): open 22, 80"
        );
        assert_eq!(
            summary(&scan("1-1024", &[], false)),
            "tcp scan of 1024 port(s): none open"
        );
        assert!(summary(&scan("", &[], true)).contains("every port (9 unverified)"));
        assert_eq!(
            summary(&detail(6379)),
            "6379/tcp open (service): redis Redis 7.0.15"
        );
    }

    #[test]
    fn cursors_round_trip_and_refuse_other_text() {
        let c = EventCursor {
            at: 1_764_000_000_123,
            id: "0b6f1c6e-4a8c-4d7e-9a51-2f7b9d3c1e20".into(),
        };
        assert_eq!(c.to_string().parse::<EventCursor>(), Ok(c));
        assert_eq!(
            "42~".parse::<EventCursor>(),
            Ok(EventCursor {
                at: 42,
                id: String::new()
            })
        );
        for bad in ["42", "x~y", "1~a b", "1~a'b"] {
            assert!(bad.parse::<EventCursor>().is_err(), "{bad}");
        }
    }
}
