//! One-shot commands: an ad-hoc [`scan`], a liveness [`ping`], the [`plan`], and the store
//! [`query`] commands (tables for people, JSON Lines for scripts).

pub mod approval;
pub mod ping;
pub mod plan;
pub mod query;
pub mod report;
pub mod scan;
pub mod token;
