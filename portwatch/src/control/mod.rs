//! Control: what runs when, and where.
//!
//! The [`scheduler`] builds each monitoring task's pass from the named target sets
//! (read through the read model, so the same in both deployments), cuts it into
//! chunks per zone and puts it on the work board (`portwatch_work::Work`). The
//! chunks are taken by this process's worker ([`scheduler::LocalPool`], embedded)
//! or leased to the idle probe nodes of each zone ([`issuer::Issuer`], scale-out,
//! over Kafka). [`jobs`] runs one chunk attempt and appends its observations;
//! [`nodes`] follows the probe nodes.

pub mod issuer;
pub mod jobs;
pub mod lead;
pub mod nodes;
pub mod scheduler;
