-- portwatch ClickHouse schema, version 3: MTTD, MTTR and convergence for the
-- dashboards.
--
-- One row per exposure episode with its figures, as `/api/v1/report` computes them
-- from the episodes and the journal's decisions: the detection bound (MTTD), when a
-- message first told it and how long that took, and when and how it was remediated
-- (`closed`, `approved` or `blocked`; empty while it is not) and how long that took
-- (MTTR). `owner` and `system` are the asset's, empty for none. The control plane
-- writes a row again whenever an episode's figures change, with a higher `ver`: read
-- with FINAL.
CREATE TABLE IF NOT EXISTS episode_reports (
    episode_id String,
    ip String,
    proto String,
    port UInt16,
    risk String,
    owner String,
    system String,
    opened_at DateTime('UTC'),
    mttd_bound_secs Nullable(Int64),
    notified_at Nullable(DateTime('UTC')),
    time_to_notify_secs Nullable(Int64),
    remediated_at Nullable(DateTime('UTC')),
    remedy String,
    time_to_remediate_secs Nullable(Int64),
    ver UInt64
) ENGINE = ReplacingMergeTree(ver)
PARTITION BY toYYYYMM(opened_at)
ORDER BY episode_id;
