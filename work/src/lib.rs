//! The work model of portwatch: what the monitoring tasks cost and whether their
//! cadences can be met ([`plan`], over what [`estate`] reads), the same in both deployments.

pub mod board;
pub mod chunk;
pub mod estate;
pub mod plan;
pub mod work;

pub use estate::{current, observe, zone_sizes, Announcer, Estate};
pub use plan::{plan, Detection, Plan, Settings, TaskPlan, ZoneFacts, ZonePlan};
pub use work::{PassLog, Work};
