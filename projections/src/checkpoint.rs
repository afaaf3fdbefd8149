//! The fold state one host at a time: what a projector checkpoints incrementally.
//!
//! Every event is about one host (its observation's address) and changes only that
//! host's part of the [`State`]: its port rows, open episodes, host row and recent
//! event ids. So the state splits into one [`HostImage`] per host, and a checkpoint
//! needs to write only the images of the hosts changed since the previous one
//! ([`State::take_changed`]). A store keeps each host's latest image with the log
//! offset it was written at; the state is the union of those images.

use std::collections::BTreeSet;
use std::net::IpAddr;

use portwatch_events::{EventId, Proto};
use serde::{Deserialize, Serialize};

use crate::{Episode, HostRow, PortRow, State};

/// One host's share of the fold state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostImage {
    /// The host.
    pub ip: IpAddr,
    /// Its host row, once it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<HostRow>,
    /// Its port rows, open and closed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortRow>,
    /// Its open episodes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub open_episodes: Vec<Episode>,
    /// Its recently folded event ids, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent: Vec<EventId>,
}

impl State {
    /// The hosts changed since the last call (all of them after
    /// [`State::from_image`]), forgetting them; give them back with
    /// [`State::mark_changed`] if their images could not be stored.
    pub fn take_changed(&mut self) -> Vec<IpAddr> {
        std::mem::take(&mut self.changed).into_iter().collect()
    }

    /// Count `hosts` as changed again (a checkpoint of them failed).
    pub fn mark_changed(&mut self, hosts: impl IntoIterator<Item = IpAddr>) {
        self.changed.extend(hosts);
    }

    /// How many hosts changed since the last [`State::take_changed`].
    pub fn changed_hosts(&self) -> usize {
        self.changed.len()
    }

    /// `ip`'s share of the state (empty lists for a host the fold never saw).
    pub fn host_image(&self, ip: IpAddr) -> HostImage {
        let key_range = (ip, Proto::Tcp, 0)..=(ip, Proto::Udp, u16::MAX);
        HostImage {
            ip,
            host: self.hosts.get(&ip).cloned(),
            ports: self
                .ports
                .range(key_range.clone())
                .map(|(_, r)| r.clone())
                .collect(),
            open_episodes: self
                .open_episodes
                .range(key_range)
                .map(|(_, e)| e.clone())
                .collect(),
            recent: self
                .recent
                .get(&ip)
                .map(|ids| ids.iter().copied().collect())
                .unwrap_or_default(),
        }
    }

    /// Add a host's stored share of the state (replacing what was there of it).
    pub fn restore_host(&mut self, image: HostImage) {
        self.add_rows(image.ports, image.open_episodes, image.host);
        if !image.recent.is_empty() {
            self.recent.insert(image.ip, image.recent.into_iter().collect());
        }
    }

    /// State restored from hosts' images.
    pub fn from_host_images(cfg: crate::FoldConfig, images: impl IntoIterator<Item = HostImage>) -> Self {
        let mut state = Self::new(cfg);
        for image in images {
            state.restore_host(image);
        }
        state
    }

    /// Every host the state holds anything of.
    pub(crate) fn known_hosts(&self) -> BTreeSet<IpAddr> {
        let mut ips: BTreeSet<IpAddr> = self.hosts.keys().copied().collect();
        ips.extend(self.ports.keys().map(|k| k.0));
        ips.extend(self.recent.keys().copied());
        ips
    }
}
