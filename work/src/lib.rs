//! The work model of portwatch, the same in both deployments and usable without the
//! binary (which keeps only the wiring):
//!
//! - what a pass costs and whether the cadences can be met ([`plan`](mod@plan), over what
//!   [`estate`] reads);
//! - how a pass is cut ([`chunk`]), who holds which chunk and what comes first
//!   ([`board`], [`work`]);
//! - when each task runs over which targets ([`schedule`]), and who runs its
//!   chunks: this process's worker ([`schedule::LocalPool`], embedded) or the probe
//!   nodes of each zone, leased chunk by chunk over Kafka ([`issuer`], whose reports
//!   [`nodes`] follows); one chunk attempt run and recorded ([`jobs`]);
//! - the leader's parts, which run while its lease lasts ([`lead`]);
//! - the block controller and its drivers ([`blocks`]).

pub mod blocks;
pub mod board;
pub mod chunk;
pub mod estate;
pub mod issuer;
pub mod jobs;
pub mod lead;
pub mod nodes;
pub mod plan;
pub mod schedule;
pub mod work;

pub use estate::{current, observe, zone_sizes, Announcer, Estate};
pub use plan::{plan, Detection, Plan, Settings, TaskPlan, ZoneFacts, ZonePlan};
pub use work::{PassLog, Work};

/// The zone of assets that name none, and the embedded deployment's one zone.
pub const DEFAULT_ZONE: &str = "default";
