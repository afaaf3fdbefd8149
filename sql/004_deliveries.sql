-- portwatch ClickHouse schema, version 4: who was told, for the dashboards.
--
-- One row per notification and channel that tried it: the notification's kind
-- (firing, reminder, escalation, resolved, reopened, expiring), host, severity and
-- owner, when it was decided, and the channel's attempts, outcome (delivered, failed
-- and retrying, gave_up), last attempt and last status (HTTP status or SMTP reply).
-- The control plane writes a row again whenever its delivery changes, with a higher
-- `ver`: read with FINAL.
CREATE TABLE IF NOT EXISTS deliveries (
    notification_id String,
    channel String,
    kind String,
    ip String,
    severity String,
    owner String,
    alerts UInt32,
    decided_at DateTime('UTC'),
    attempts UInt32,
    outcome String,
    last_at DateTime('UTC'),
    last_status Nullable(UInt16),
    ver UInt64
) ENGINE = ReplacingMergeTree(ver)
PARTITION BY toYYYYMM(decided_at)
ORDER BY (notification_id, channel);
