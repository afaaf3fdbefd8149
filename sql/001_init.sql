-- portwatch ClickHouse schema, version 1.
--
-- Written for the SQL subset that runs on ClickHouse 18.16 and on current releases
-- (no TTL, CODEC, DateTime64, Map, Bool, LowCardinality or CTEs). Statements are
-- separated by lines that end in ';'. Every statement is idempotent (IF NOT EXISTS),
-- so a migration interrupted half way is simply run again.
--
-- Rows that the projector rewrites carry `ver`, the log offset of the last event that
-- changed them; ReplacingMergeTree keeps the highest. Read them with FINAL (or
-- argMax(..., ver) GROUP BY key): between background merges a table may still hold
-- older versions, and a replay after a crash writes identical rows again.
-- `row` holds the complete row as JSON (exact timestamps, every field); the typed
-- columns beside it are for SQL and dashboards. Times are DateTime('UTC'), seconds.

-- Raw observations: one row per event, as the probes reported it. The history behind
-- every exposure question ("when was ip:port first and last seen open?").
-- Retention: drop old monthly partitions (see sql/README.md).
CREATE TABLE IF NOT EXISTS observations (
    id String,
    ts DateTime('UTC'),
    ts_ms Int64,
    kind String,
    node String,
    job String,
    task String,
    ip String,
    proto String,
    open_ports Array(UInt16),
    covered String,
    alive Int8,
    wildcard UInt8,
    body String,
    kpartition UInt32,
    koffset UInt64
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(ts)
ORDER BY (ip, ts, id);

-- Current state of every port ever seen open (one row per ip, proto, port).
CREATE TABLE IF NOT EXISTS port_state (
    ip String,
    proto String,
    port UInt16,
    state String,
    first_seen DateTime('UTC'),
    last_seen DateTime('UTC'),
    last_change DateTime('UTC'),
    misses UInt32,
    episode_id String,
    evidence String,
    service String,
    product String,
    svc_version String,
    row String,
    kpartition UInt32,
    ver UInt64
) ENGINE = ReplacingMergeTree(ver)
ORDER BY (ip, proto, port);

-- Exposure episodes: one per period a port was open. MTTD bound and exposure time.
CREATE TABLE IF NOT EXISTS episodes (
    id String,
    ip String,
    proto String,
    port UInt16,
    opened_at DateTime('UTC'),
    last_seen DateTime('UTC'),
    last_negative_before_open Nullable(DateTime('UTC')),
    mttd_bound_secs Nullable(Int64),
    closed_at Nullable(DateTime('UTC')),
    duration_secs Nullable(Int64),
    observations UInt64,
    row String,
    kpartition UInt32,
    ver UInt64
) ENGINE = ReplacingMergeTree(ver)
PARTITION BY toYYYYMM(opened_at)
ORDER BY (ip, proto, port, id);

-- Hosts: liveness and scan counts.
CREATE TABLE IF NOT EXISTS hosts (
    ip String,
    alive Int8,
    last_alive Nullable(DateTime('UTC')),
    last_checked Nullable(DateTime('UTC')),
    scans UInt64,
    open_ports UInt32,
    wildcard UInt8,
    row String,
    kpartition UInt32,
    ver UInt64
) ENGINE = ReplacingMergeTree(ver)
ORDER BY ip;

-- Alerts: one per exposure opened and one per exposure closed, with a stable id
-- (episode id + kind), so replays and redeliveries never make a second alert.
CREATE TABLE IF NOT EXISTS alerts (
    id String,
    kind String,
    severity String,
    ip String,
    proto String,
    port UInt16,
    episode_id String,
    at DateTime('UTC'),
    body String,
    kpartition UInt32,
    ver UInt64
) ENGINE = ReplacingMergeTree(ver)
PARTITION BY toYYYYMM(at)
ORDER BY id;

-- Scan jobs as the control plane issued them and the probe nodes reported them.
CREATE TABLE IF NOT EXISTS jobs (
    id String,
    zone String,
    task String,
    state String,
    node String,
    targets UInt64,
    issued_at DateTime('UTC'),
    updated_at DateTime('UTC'),
    detail String,
    ver UInt64
) ENGINE = ReplacingMergeTree(ver)
ORDER BY id;

-- Probe nodes and their last heartbeat.
CREATE TABLE IF NOT EXISTS probe_nodes (
    node String,
    zone String,
    last_heartbeat DateTime('UTC'),
    running_job String,
    spooled UInt64,
    spool_overflow UInt64,
    body String,
    ver UInt64
) ENGINE = ReplacingMergeTree(ver)
ORDER BY node;

-- Projector checkpoints: per consumer group and partition, the next offset to fold
-- and the fold state that goes with it. Written after the rows of the events before
-- it, so a crash in between replays those events and rewrites identical rows.
CREATE TABLE IF NOT EXISTS projector_offsets (
    consumer_group String,
    topic String,
    kpartition UInt32,
    next_offset UInt64,
    state String,
    written_at DateTime('UTC'),
    ver UInt64
) ENGINE = ReplacingMergeTree(ver)
ORDER BY (consumer_group, topic, kpartition);

-- MTTD/MTTR rollup per day of detection. A view over the deduplicated episodes, so
-- it is exact whatever the merge state of the tables.
CREATE VIEW IF NOT EXISTS exposure_daily AS
SELECT
    toDate(opened_at) AS day,
    count() AS opened,
    countIf(isNotNull(closed_at)) AS closed,
    quantile(0.5)(mttd_bound_secs) AS mttd_p50_secs,
    quantile(0.9)(mttd_bound_secs) AS mttd_p90_secs,
    quantile(0.5)(duration_secs) AS mttr_p50_secs,
    quantile(0.9)(duration_secs) AS mttr_p90_secs
FROM episodes FINAL
GROUP BY day;
