//! Offset order: a partition's records are folded in offset order without holes.
//!
//! When a reader hands over a record past the next expected offset (a consumer that
//! started past the checkpoint, or a broker that served a later batch before an
//! earlier one was readable), the projector seeks back and reads the missing records
//! first. A hole that persists for [`GAP_PATIENCE`] (a topic with transaction
//! markers would have such holes) is logged and folded past.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use portwatch_projections::State;
use portwatch_stores::Loaded;

/// How long a hole in a partition's offsets is re-read before it is accepted as
/// real. portwatch's producers write no transaction markers, so on its own topics a
/// hole means records not yet readable, not records that do not exist.
pub(crate) const GAP_PATIENCE: Duration = Duration::from_secs(10);

/// Minimum spacing of seeks back to the same hole (records already fetched past
/// it may still arrive in between; they are dropped and read again after the seek).
const GAP_RESEEK: Duration = Duration::from_millis(200);

/// Fold state of one partition this instance owns.
pub(crate) struct Part {
    pub(crate) state: State,
    pub(crate) next: u64,
    /// Folded past the last checkpoint.
    pub(crate) dirty: bool,
    /// Waiting for offset `next` after seeing a later one: since when, last seek.
    pub(crate) gap: Option<(Instant, Option<Instant>)>,
    /// Whether offsets are dense (see `PartitionedReader::contiguous`).
    pub(crate) contiguous: bool,
    /// Hosts whose stored image is ahead of the checkpoint's offset (see
    /// `Loaded::ahead`), and the highest such offset (past it, none is ahead).
    ahead: HashMap<IpAddr, u64>,
    ahead_until: u64,
}

/// What to do with a record at `offset` of a partition expecting `next`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Order {
    /// Already folded (a replay below the checkpoint or a re-read).
    Skip,
    /// The expected record (or a hole that outlasted [`GAP_PATIENCE`]).
    Fold,
    /// Past a hole: seek back to `next` (or, just after a seek, wait for it).
    SeekBack { seek: bool },
}

impl Part {
    /// A partition as loaded from the sink.
    pub(crate) fn new(loaded: Loaded, contiguous: bool) -> Self {
        Self {
            ahead_until: loaded.ahead.values().copied().max().unwrap_or(0),
            state: loaded.state,
            next: loaded.next,
            dirty: false,
            gap: None,
            contiguous,
            ahead: loaded.ahead,
        }
    }

    /// Whether `ip`'s state already holds its event at `offset` (its image was stored
    /// past it).
    pub(crate) fn holds(&self, ip: IpAddr, offset: u64) -> bool {
        self.ahead.get(&ip).is_some_and(|&at| offset < at)
    }

    /// The record at `offset` is folded (or set aside).
    pub(crate) fn folded(&mut self, offset: u64) {
        self.next = offset + 1;
        self.dirty = true;
        if !self.ahead.is_empty() && self.next >= self.ahead_until {
            self.ahead.clear();
        }
    }

    pub(crate) fn order(&mut self, offset: u64, now: Instant) -> Order {
        if offset < self.next {
            return Order::Skip;
        }
        if offset == self.next || !self.contiguous {
            self.gap = None;
            return Order::Fold;
        }
        let (since, last_seek) = self.gap.get_or_insert((now, None));
        if now.duration_since(*since) >= GAP_PATIENCE {
            self.gap = None;
            return Order::Fold;
        }
        let seek = last_seek.is_none_or(|at| now.duration_since(at) >= GAP_RESEEK);
        if seek {
            *last_seek = Some(now);
        }
        Order::SeekBack { seek }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portwatch_projections::FoldConfig;

    fn part(next: u64) -> Part {
        Part::new(Loaded::at(State::new(FoldConfig::default()), next), true)
    }

    #[test]
    fn folds_only_contiguous_offsets_and_seeks_back_over_a_hole() {
        let t0 = Instant::now();
        let mut p = part(10);
        assert_eq!(p.order(9, t0), Order::Skip, "below next: already folded");
        assert_eq!(p.order(10, t0), Order::Fold);
        p.next = 11;
        // A later record first: seek back, once per GAP_RESEEK, drop what arrives between.
        assert_eq!(p.order(14, t0), Order::SeekBack { seek: true });
        assert_eq!(
            p.order(15, t0 + Duration::from_millis(50)),
            Order::SeekBack { seek: false }
        );
        assert_eq!(p.order(14, t0 + GAP_RESEEK), Order::SeekBack { seek: true });
        // The missing record arrives: the hole is closed and forgotten.
        assert_eq!(p.order(11, t0 + GAP_RESEEK), Order::Fold);
        assert!(p.gap.is_none());
    }

    #[test]
    fn a_log_without_dense_offsets_folds_every_later_record() {
        let mut p = part(0);
        p.contiguous = false;
        assert_eq!(
            p.order(1, Instant::now()),
            Order::Fold,
            "SQLite row ids start at 1"
        );
        p.next = 2;
        assert_eq!(p.order(1, Instant::now()), Order::Skip);
    }

    #[test]
    fn a_hole_that_outlasts_the_patience_is_folded_past() {
        let t0 = Instant::now();
        let mut p = part(3);
        assert_eq!(p.order(5, t0), Order::SeekBack { seek: true });
        assert_eq!(p.order(5, t0 + GAP_PATIENCE / 2), Order::SeekBack { seek: true });
        assert_eq!(p.order(5, t0 + GAP_PATIENCE), Order::Fold);
        assert!(p.gap.is_none());
    }

    #[test]
    fn a_host_stored_ahead_of_the_offset_skips_its_events_below_its_image() {
        let (a, b) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        let loaded = Loaded {
            ahead: HashMap::from([(a, 8)]),
            ..Loaded::at(State::new(FoldConfig::default()), 5)
        };
        let mut p = Part::new(loaded, true);
        for offset in 5..8 {
            assert!(p.holds(a, offset), "{a}'s image holds offset {offset}");
            assert!(!p.holds(b, offset), "{b} has no image ahead");
            p.folded(offset);
        }
        assert!(!p.holds(a, 8), "from its image's offset on, {a} folds again");
        p.folded(8);
        assert!(p.ahead.is_empty(), "past every image ahead nothing is remembered");
        assert_eq!((p.next, p.dirty), (9, true));
    }
}
