//! Control: what runs when, and where.
//!
//! The [`scheduler`] builds each monitoring task's jobs from the named target sets
//! (read through the read model, so the same in both deployments) and hands them to
//! a dispatcher: in this process ([`scheduler::LocalRunner`], embedded) or to the
//! probe nodes of each zone ([`issuer::Issuer`], scale-out, over Kafka). [`jobs`]
//! runs one job and appends its observations; [`nodes`] follows the probe nodes.

pub mod issuer;
pub mod jobs;
pub mod lead;
pub mod nodes;
pub mod scheduler;
