-- portwatch ClickHouse schema, version 5: projector state one host at a time.
--
-- A projector's fold state splits into one image per host (its port rows, open
-- episodes, host row and recently folded event ids: every event changes one host's
-- image only). A checkpoint writes the images of the hosts changed since the last
-- one, with `ver` = the next offset of that checkpoint, and then its offset to
-- projector_offsets (whose `state` column is empty from this version on). Loading a
-- partition reads its hosts' latest images (FINAL); an image whose `ver` is above
-- the partition's committed offset came from a checkpoint whose offset was never
-- written, and the projector skips that host's events below `ver` when it replays.
CREATE TABLE IF NOT EXISTS projector_state (
    consumer_group String,
    topic String,
    kpartition UInt32,
    host String,
    image String,
    ver UInt64
) ENGINE = ReplacingMergeTree(ver)
ORDER BY (consumer_group, topic, kpartition, host);
