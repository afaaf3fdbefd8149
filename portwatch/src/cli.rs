//! Command-line interface. Every role and query is a subcommand of one binary.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// portwatch: continuous monitoring of internet-facing ports.
///
/// Finds dangerous open ports (databases on 0.0.0.0, VNC, admin consoles) minutes
/// after they appear, records every probe result as an immutable event, and keeps
/// the current exposure state, its history (episodes, MTTD) and host liveness.
#[derive(Debug, Parser)]
#[command(name = "portwatch", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    /// Config file (TOML). Without one, portwatch uses its built-in defaults, whose
    /// only asset is the loopback demo scope 127.0.0.1.
    #[arg(
        long,
        short = 'c',
        global = true,
        env = "PORTWATCH_CONFIG",
        value_name = "FILE"
    )]
    pub config: Option<PathBuf>,

    /// Data directory holding events.db and state.db; overrides [store] path.
    #[arg(long, global = true, env = "PORTWATCH_DATA", value_name = "DIR")]
    pub data: Option<PathBuf>,

    /// Log filter (tracing env-filter syntax), e.g. `info` or `portwatch=debug`.
    #[arg(
        long,
        global = true,
        env = "PORTWATCH_LOG",
        default_value = "info",
        value_name = "FILTER"
    )]
    pub log: String,

    /// Write logs as JSON lines instead of text (logs always go to stderr).
    #[arg(long, global = true)]
    pub log_json: bool,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the embedded all-in-one: scheduler, probes, projections, API (default role).
    ///
    /// Examples:
    ///   portwatch up                       # loopback demo scope, API on 127.0.0.1:7678
    ///   portwatch up --config prod.toml
    #[command(verbatim_doc_comment)]
    Up(UpArgs),

    /// Scan targets once, now, and print the open ports.
    ///
    /// Targets must lie inside the configured assets (without a config: 127.0.0.1).
    ///
    /// Examples:
    ///   portwatch scan 127.0.0.1                   # high-risk port list
    ///   portwatch scan 127.0.0.1 -p -              # all 65535 ports
    ///   portwatch scan 10.1.0.0/24 -p 22,80,8000-8100 --rate 2000 --json -c prod.toml
    ///   portwatch scan 10.1.0.7 -p - --service     # what runs there, admin panels, risk
    #[command(verbatim_doc_comment)]
    Scan(ScanArgs),

    /// Check now whether hosts are alive (ICMP echo + TCP SYN pings when privileged,
    /// TCP connect pings otherwise), and print one verdict per host.
    ///
    /// Examples:
    ///   portwatch ping 127.0.0.1
    ///   portwatch ping 10.1.0.0/24 --json -c prod.toml
    #[command(verbatim_doc_comment)]
    Ping(PingArgs),

    /// List known ports from the store (open by default).
    ///
    /// Examples:
    ///   portwatch ports
    ///   portwatch ports --state all --ip 10.1.0.7 --json
    #[command(verbatim_doc_comment)]
    Ports(PortsArgs),

    /// List hosts and their liveness from the store.
    ///
    /// Example:
    ///   portwatch hosts --json
    #[command(verbatim_doc_comment)]
    Hosts(OutputArgs),

    /// List exposure episodes (open periods of ports) with their MTTD bounds.
    ///
    /// Examples:
    ///   portwatch episodes --open
    ///   portwatch episodes --ip 10.1.0.7 --json
    #[command(verbatim_doc_comment)]
    Episodes(EpisodesArgs),

    /// List alerts: exposures opened and closed, high-risk services and admin
    /// panels found, one per episode and kind, oldest first.
    ///
    /// Examples:
    ///   portwatch alerts
    ///   portwatch alerts --risk high_risk_service --json
    #[command(verbatim_doc_comment)]
    Alerts(AlertsArgs),

    /// Print events from the event log as JSON lines (for SIEM export or debugging).
    ///
    /// Example:
    ///   portwatch events --from 0 --limit 100
    #[command(verbatim_doc_comment)]
    Events(EventsArgs),

    /// Approvals through the API of a running portwatch (`up` or `control`): file
    /// a request, approve or reject one (approver, never the requester), list them.
    /// The token comes from PORTWATCH_TOKEN or --token-file.
    ///
    /// Examples:
    ///   portwatch approval request --target 203.0.113.7 --ports 8443 --service https \
    ///       --reason "vendor support portal" --owner web-team --expires 30d
    ///   portwatch approval approve ap_1f2e3d4c5b6a7988 --note "until the VPN move"
    ///   portwatch approval list
    #[command(verbatim_doc_comment)]
    Approval(ApprovalArgs),

    /// MTTD, time to notify, MTTR and the convergence trend (embedded store; the
    /// scale-out figures are at /api/v1/report).
    ///
    /// Examples:
    ///   portwatch report
    ///   portwatch report --by owner --days 90 --json
    #[command(verbatim_doc_comment)]
    Report(ReportArgs),

    /// Every decision on record, newest first: who made it, with which token, who
    /// issued that token, from where; refused attempts with the rule that refused
    /// them. The same entries as GET /api/v1/audit.
    ///
    /// Examples:
    ///   portwatch audit
    ///   portwatch audit --kind refused --since 24h --json
    ///   portwatch audit --user ada --kafka -c scaleout.toml
    #[command(verbatim_doc_comment)]
    Audit(AuditArgs),

    /// Manage API tokens: `token create` issues one (shown once, stored hashed).
    ///
    /// Examples:
    ///   portwatch token create --user alice --role operator
    ///   portwatch token create --user soc-bot --role viewer --kafka -c scaleout.toml
    #[command(verbatim_doc_comment, subcommand)]
    Token(TokenCommand),

    /// Fold the whole event log into a fresh state store in another directory.
    ///
    /// Use it to check a store against its log, or to rebuild state after changing
    /// [projection] settings.
    ///
    /// Examples:
    ///   portwatch rebuild --to /tmp/rebuilt && portwatch --data /tmp/rebuilt ports
    ///   portwatch rebuild --from-clickhouse --to /tmp/archive -c scaleout.toml
    #[command(verbatim_doc_comment)]
    Rebuild(RebuildArgs),

    /// Print the complete projected state (ports, episodes, hosts) as one JSON document.
    ///
    /// Examples:
    ///   portwatch snapshot > state.json
    ///   portwatch snapshot --clickhouse -c scaleout.toml   # the scale-out state
    #[command(verbatim_doc_comment)]
    Snapshot(SnapshotArgs),

    /// Whether the cadences can be met: each task's pass per zone (expected, and
    /// measured where it ran), its share of the rate budget, the worst-case time to
    /// find a risky port, and what would fix a cadence that cannot be kept. Reads
    /// the embedded state if there is one (liveness, nodes, recent passes).
    ///
    /// Examples:
    ///   portwatch plan -c prod.toml
    ///   portwatch plan --nodes 3 --json          # what three nodes a zone would give
    ///   portwatch plan --clickhouse -c scaleout.toml
    #[command(verbatim_doc_comment)]
    Plan(PlanArgs),

    /// Scale-out: run a probe node that takes its zone's jobs from Kafka.
    ///
    /// Examples:
    ///   portwatch probe --zone dmz -c scaleout.toml
    ///   portwatch probe --zone office --metrics 0.0.0.0:9101
    #[command(verbatim_doc_comment)]
    Probe(ProbeArgs),

    /// Scale-out: fold the observations topic into ClickHouse (run several: they
    /// share the partitions as a consumer group).
    ///
    /// Example:
    ///   portwatch project -c scaleout.toml --metrics 0.0.0.0:9102
    #[command(verbatim_doc_comment)]
    Project(ProjectArgs),

    /// Scale-out: run the control plane (scheduler issuing jobs per zone, probe
    /// node tracking, API over ClickHouse).
    ///
    /// Example:
    ///   portwatch control -c scaleout.toml --listen 0.0.0.0:7678
    #[command(verbatim_doc_comment)]
    Control(ControlArgs),

    /// Scale-out: apply the ClickHouse migrations in sql/ (idempotent; refuses a
    /// database with a newer schema), and create the Kafka topics with --topics.
    ///
    /// Example:
    ///   portwatch migrate -c scaleout.toml --topics
    #[command(verbatim_doc_comment)]
    Migrate(MigrateArgs),

    /// Check a config file and print the effective settings.
    ///
    /// Example:
    ///   portwatch check-config --config prod.toml
    #[command(verbatim_doc_comment)]
    CheckConfig,
}

/// `up` flags.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// Address for the API, console and /metrics; overrides [api] listen.
    #[arg(long, value_name = "IP:PORT")]
    pub listen: Option<String>,

    /// Allow assets larger than [scope] max_targets addresses.
    #[arg(long)]
    pub allow_large: bool,
}

/// `scan` flags.
#[derive(Debug, Args)]
pub struct ScanArgs {
    /// Addresses or CIDR networks (IPv4 or IPv6), inside the asset scope.
    #[arg(required = true, value_name = "TARGET")]
    pub targets: Vec<String>,

    /// Ports: `22,80,8000-8100`, `-` for all 65535. Default: the high-risk list.
    #[arg(long, short = 'p', value_name = "PORTS")]
    pub ports: Option<String>,

    /// Technique: `auto` (SYN when privileged, else connect), `syn`, `connect`;
    /// overrides [scan] mode.
    #[arg(long, value_name = "MODE")]
    pub mode: Option<String>,

    /// Probes per second; overrides [scan] rate.
    #[arg(long, value_name = "N")]
    pub rate: Option<i64>,

    /// SYN mode: most passes over unanswered probes; overrides [scan] tries.
    #[arg(long, value_name = "N")]
    pub tries: Option<i64>,

    /// Handshake timeout, e.g. `800ms`; overrides [scan] timeout.
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,

    /// Most attempts in flight; overrides [scan] concurrency.
    #[arg(long, value_name = "N")]
    pub concurrency: Option<i64>,

    /// Print JSON lines (one per open port) instead of a table.
    #[arg(long)]
    pub json: bool,

    /// Allow more addresses than [scope] max_targets.
    #[arg(long)]
    pub allow_large: bool,

    /// Also append the results to the event log as an ad-hoc job, so that state,
    /// episodes and the API see them.
    #[arg(long)]
    pub record: bool,

    /// Identify the service on every open port (product, version, TLS), fingerprint
    /// web ports and look for admin panels, and classify each port ([service]).
    #[arg(long)]
    pub service: bool,
}

/// `ping` flags.
#[derive(Debug, Args)]
pub struct PingArgs {
    /// Addresses or CIDR networks, inside the asset scope.
    #[arg(required = true, value_name = "TARGET")]
    pub targets: Vec<String>,

    /// TCP ports to ping; overrides [scan] liveness_ports.
    #[arg(long, short = 'p', value_name = "PORTS")]
    pub ports: Option<String>,

    /// `auto`, `syn` (ICMP + SYN pings, privileged) or `connect`; overrides [scan] mode.
    #[arg(long, value_name = "MODE")]
    pub mode: Option<String>,

    /// JSON lines (one per host, as the `host_liveness` event) instead of a table.
    #[arg(long)]
    pub json: bool,

    /// Allow more addresses than [scope] max_targets.
    #[arg(long)]
    pub allow_large: bool,
}

/// Output format flag shared by queries.
#[derive(Debug, Args)]
pub struct OutputArgs {
    /// JSON lines instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Port state filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StateFilter {
    /// Currently open.
    Open,
    /// Declared closed.
    Closed,
    /// Both.
    All,
}

/// `ports` flags.
#[derive(Debug, Args)]
pub struct PortsArgs {
    /// Which ports.
    #[arg(long, value_enum, default_value = "open")]
    pub state: StateFilter,

    /// Only this host.
    #[arg(long, value_name = "IP")]
    pub ip: Option<String>,

    /// Output format.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `episodes` flags.
#[derive(Debug, Args)]
pub struct EpisodesArgs {
    /// Only episodes that are still open.
    #[arg(long, conflicts_with = "closed")]
    pub open: bool,

    /// Only closed episodes.
    #[arg(long)]
    pub closed: bool,

    /// Only this host.
    #[arg(long, value_name = "IP")]
    pub ip: Option<String>,

    /// Output format.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `alerts` flags.
#[derive(Debug, Args)]
pub struct AlertsArgs {
    /// Only alerts about this host.
    #[arg(long, value_name = "IP")]
    pub ip: Option<String>,

    /// Only alerts of this risk class (risk_port, high_risk_port, high_risk_service,
    /// high_risk_admin_panel).
    #[arg(long, value_name = "CLASS")]
    pub risk: Option<String>,

    /// Output format.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `events` flags.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Read the scale-out log (Kafka's observations topic, every partition) instead
    /// of the embedded one; --from and --limit then apply per partition.
    #[arg(long)]
    pub kafka: bool,

    /// With --kafka: print the dead-letter topic instead (records the projector
    /// could not decode, with the reason).
    #[arg(long, requires = "kafka")]
    pub dead_letters: bool,

    /// First offset to print.
    #[arg(long, default_value_t = 0)]
    pub from: u64,

    /// Most events to print.
    #[arg(long, default_value_t = 1000)]
    pub limit: usize,
}

/// `report` flags.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Group by risk, owner, system or day.
    #[arg(long, default_value = "risk")]
    pub by: String,
    /// Episodes opened in the last N days.
    #[arg(long, default_value_t = 30)]
    pub days: i64,
    /// JSON Lines: one group per line, then one day of the trend per line.
    #[arg(long)]
    pub json: bool,
}

/// `approval` flags and subcommands.
#[derive(Debug, Args)]
pub struct ApprovalArgs {
    /// The API's base URL. Default: http://[api] listen.
    #[arg(long, global = true)]
    pub api: Option<String>,

    /// A file holding the API token (default: the PORTWATCH_TOKEN variable).
    #[arg(long, global = true)]
    pub token_file: Option<PathBuf>,

    /// What to do.
    #[command(subcommand)]
    pub command: ApprovalCommand,
}

/// `approval` subcommands.
#[derive(Debug, Subcommand)]
pub enum ApprovalCommand {
    /// File a request (operator).
    Request {
        /// An address or CIDR network.
        #[arg(long)]
        target: String,
        /// Ports: 8080, 8000-8100, 80,443.
        #[arg(long)]
        ports: String,
        /// tcp or udp.
        #[arg(long)]
        proto: Option<String>,
        /// The service expected there.
        #[arg(long)]
        service: Option<String>,
        /// Why the business needs it.
        #[arg(long)]
        reason: String,
        /// Who answers for it.
        #[arg(long)]
        owner: String,
        /// When it expires: RFC 3339 time or a duration from now (30d).
        #[arg(long)]
        expires: String,
    },
    /// Grant a pending request (approver; not your own).
    Approve {
        /// The approval's id.
        id: String,
        /// A note for the record.
        #[arg(long)]
        note: Option<String>,
    },
    /// Reject a pending request (approver; not your own).
    Reject {
        /// The approval's id.
        id: String,
        /// Why.
        #[arg(long)]
        note: Option<String>,
    },
    /// Every approval and its state.
    List {
        /// JSON Lines instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// `token` subcommands.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Issue a token for a user (created with the role if new; the role is changed
    /// if given and different). The token is printed once.
    Create(TokenCreateArgs),
}

/// `token create` flags.
#[derive(Debug, Args)]
pub struct TokenCreateArgs {
    /// The user's name (letters, digits, '.', '_', '-', '@').
    #[arg(long)]
    pub user: String,

    /// viewer, operator, approver or admin (needed for a new user).
    #[arg(long)]
    pub role: Option<String>,

    /// Record it in the scale-out journal (Kafka's decisions topic) instead of the
    /// embedded one.
    #[arg(long)]
    pub kafka: bool,
}

/// `audit` flags.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only decisions made by this user (or system name).
    #[arg(long)]
    pub user: Option<String>,

    /// Only decisions of this kind (approval_granted, refused, token_issued, ...).
    #[arg(long)]
    pub kind: Option<String>,

    /// Only decisions at or after this time (RFC 3339) or within this long (24h).
    #[arg(long)]
    pub since: Option<String>,

    /// At most this many entries.
    #[arg(long, default_value_t = 1000)]
    pub limit: usize,

    /// Read the scale-out journal (Kafka's decisions topic) instead of the embedded one.
    #[arg(long)]
    pub kafka: bool,

    #[command(flatten)]
    pub output: OutputArgs,
}

/// `rebuild` flags.
#[derive(Debug, Args)]
pub struct RebuildArgs {
    /// Directory for the rebuilt state.db (must not hold one already).
    #[arg(long, value_name = "DIR")]
    pub to: PathBuf,
    /// Fold the scale-out archive instead: ClickHouse's observations ([clickhouse]),
    /// copied in log order into DIR/events.db, folded into DIR/state.db.
    #[arg(long)]
    pub from_clickhouse: bool,
}

/// `snapshot` flags.
#[derive(Debug, Args)]
pub struct SnapshotArgs {
    /// Read the scale-out state from ClickHouse ([clickhouse]) instead of the
    /// embedded store.
    #[arg(long)]
    pub clickhouse: bool,
}

/// `plan` flags.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// One JSON object instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Plan every zone with this many probe nodes (what if), instead of those
    /// running (without state: one).
    #[arg(long, value_name = "N")]
    pub nodes: Option<u32>,
    /// Plan the scale-out deployment: its zones, and its state in ClickHouse
    /// ([clickhouse]) and journal (Kafka).
    #[arg(long)]
    pub clickhouse: bool,
}

/// `probe` flags.
#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// Name of this probe node (in events and heartbeats); overrides [node] name.
    #[arg(long, env = "PORTWATCH_NODE", value_name = "NAME")]
    pub node: Option<String>,

    /// Network zone whose jobs this node takes; overrides [probe] zone.
    #[arg(long, value_name = "ZONE")]
    pub zone: Option<String>,

    /// Spool file; overrides [probe] spool_path (default: DATA/spool-ZONE.db).
    #[arg(long, value_name = "FILE")]
    pub spool: Option<PathBuf>,

    /// Serve Prometheus metrics on this address.
    #[arg(long, value_name = "IP:PORT")]
    pub metrics: Option<String>,
}

/// `project` flags.
#[derive(Debug, Args)]
pub struct ProjectArgs {
    /// Consumer group; overrides [projector] group.
    #[arg(long, value_name = "GROUP")]
    pub group: Option<String>,

    /// Serve Prometheus metrics on this address.
    #[arg(long, value_name = "IP:PORT")]
    pub metrics: Option<String>,

    /// Fold on when a partition's records after its checkpoint expired before any
    /// projector folded them (the projector otherwise stops, naming the partition
    /// and offsets). Those events are lost; later scans correct their hosts.
    #[arg(long)]
    pub accept_gap: bool,
}

/// `control` flags.
#[derive(Debug, Args)]
pub struct ControlArgs {
    /// Address for the API and /metrics; overrides [api] listen.
    #[arg(long, value_name = "IP:PORT")]
    pub listen: Option<String>,
}

/// `migrate` flags.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Also create the Kafka topics ([kafka]) where missing.
    #[arg(long)]
    pub topics: bool,
}
