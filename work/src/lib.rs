//! The work model of portwatch: what the monitoring tasks cost and whether their
//! cadences can be met ([`plan`]), the same in both deployments.

pub mod plan;

pub use plan::{plan, Detection, Plan, Settings, TaskPlan, ZoneFacts, ZonePlan};
