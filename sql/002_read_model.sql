-- portwatch ClickHouse schema, version 2: what the one read model filters and pages
-- on, the same columns the embedded store has.
--
-- `risk` is the port's risk class under the projector's policy (risk_port,
-- high_risk_port, high_risk_service, high_risk_admin_panel); `ipkey` the address as
-- sortable text (family digit + fixed-width hex), so that an owner's CIDRs are key
-- ranges; `skey` the row's sort key, after which the next page starts.
--
-- 18.16 has no ADD COLUMN IF NOT EXISTS: the migration runner skips an ADD COLUMN
-- whose column exists already, so an interrupted migration can simply run again.
-- Rows written by schema 1 have empty keys: re-project (drop the projector_offsets
-- rows of the group) to fill them.
ALTER TABLE port_state ADD COLUMN risk String DEFAULT 'risk_port';
ALTER TABLE port_state ADD COLUMN ipkey String DEFAULT '';
ALTER TABLE port_state ADD COLUMN skey String DEFAULT '';
ALTER TABLE episodes ADD COLUMN ipkey String DEFAULT '';
ALTER TABLE episodes ADD COLUMN skey String DEFAULT '';
ALTER TABLE hosts ADD COLUMN ipkey String DEFAULT '';
ALTER TABLE hosts ADD COLUMN skey String DEFAULT '';
ALTER TABLE alerts ADD COLUMN risk String DEFAULT 'risk_port';
ALTER TABLE alerts ADD COLUMN ipkey String DEFAULT '';
ALTER TABLE alerts ADD COLUMN skey String DEFAULT '';
