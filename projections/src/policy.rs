//! The risk policy: which class an open port has, in one place for the folds, the
//! alerts and the API alike.
//!
//! The brief's classes ([`RiskClass`]): any open port is a *risk port*; a
//! dangerous service's default port is a *high-risk port*; a dangerous service found
//! by fingerprinting on another port is a *high-risk service*; a web management
//! console is a *high-risk admin panel*. The lists are data: the config can replace
//! them, and the scheduler probes exactly [`Policy::high_risk_ports`] in the
//! `high_risk_ports` task.

use std::collections::BTreeMap;

use portwatch_events::{PortSet, RiskClass};

use crate::PortRow;

/// (port, service) pairs that must never be reachable from the internet.
pub const HIGH_RISK_PORTS: &[(u16, &str)] = &[
    (21, "ftp"),
    (23, "telnet"),
    (111, "rpcbind"),
    (135, "msrpc"),
    (139, "netbios-ssn"),
    (445, "microsoft-ds"),
    (512, "exec"),
    (513, "login"),
    (514, "shell"),
    (873, "rsync"),
    (1099, "java-rmi"),
    (1433, "ms-sql-s"),
    (1521, "oracle-tns"),
    (2049, "nfs"),
    (2181, "zookeeper"),
    (2375, "docker"),
    (2376, "docker-tls"),
    (2379, "etcd-client"),
    (3306, "mysql"),
    (3389, "ms-wbt-server"),
    (4848, "glassfish-admin"),
    (5432, "postgresql"),
    (5601, "kibana"),
    (5672, "amqp"),
    (5900, "vnc"),
    (5984, "couchdb"),
    (6379, "redis"),
    (6443, "kubernetes-api"),
    (7001, "weblogic"),
    (8086, "influxdb"),
    (8123, "clickhouse-http"),
    (8161, "activemq-admin"),
    (8500, "consul"),
    (9000, "clickhouse-native"),
    (9042, "cassandra"),
    (9092, "kafka"),
    (9200, "elasticsearch"),
    (9300, "elasticsearch-transport"),
    (10250, "kubelet"),
    (11211, "memcached"),
    (15672, "rabbitmq-management"),
    (27017, "mongodb"),
    (50070, "hadoop-namenode"),
];

/// The default high-risk ports as a set.
pub fn high_risk_ports() -> PortSet {
    PortSet::from_ports(HIGH_RISK_PORTS.iter().map(|&(p, _)| p))
}

/// The service usually found on a high-risk port, if it is one.
pub fn high_risk_service(port: u16) -> Option<&'static str> {
    HIGH_RISK_PORTS
        .binary_search_by_key(&port, |&(p, _)| p)
        .ok()
        .map(|i| HIGH_RISK_PORTS[i].1)
}

/// Services that are dangerous wherever they listen (service names as
/// [`crate::service`] reports them): databases, caches, queues, cluster
/// coordinators, remote desktops, file sharing and container control planes.
pub const HIGH_RISK_SERVICES: &[&str] = &[
    "amqp",
    "cassandra",
    "clickhouse",
    "couchdb",
    "docker",
    "elasticsearch",
    "etcd",
    "ftp",
    "kafka",
    "kubernetes",
    "ldap",
    "memcached",
    "microsoft-ds",
    "modbus",
    "mongodb",
    "mqtt",
    "ms-sql-s",
    "ms-wbt-server",
    "mysql",
    "nats",
    "oracle-tns",
    "postgresql",
    "redis",
    "rsync",
    "telnet",
    "vnc",
    "zookeeper",
];

/// What classification looks at: the policy's lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Dangerous default ports.
    pub high_risk_ports: PortSet,
    /// Dangerous services, wherever they listen.
    pub high_risk_services: Vec<String>,
    /// Each service's own default ports (the probe registry knows them; the binary
    /// fills this in). A dangerous service on one of them is a high-risk *port*.
    pub service_ports: BTreeMap<String, Vec<u16>>,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            high_risk_ports: high_risk_ports(),
            high_risk_services: HIGH_RISK_SERVICES.iter().map(|s| s.to_string()).collect(),
            service_ports: BTreeMap::new(),
        }
    }
}

impl Policy {
    /// Classify an open port from its number, the service recognised on it and
    /// whether a high-risk admin panel answers there. A panel outranks the rest; a
    /// port of the high-risk list stays a high-risk port whatever answers on it, as
    /// does a dangerous service on its own default port; a dangerous service
    /// elsewhere is a high-risk service.
    pub fn classify(&self, port: u16, service: Option<&str>, admin_panel: bool) -> RiskClass {
        let dangerous = service.filter(|s| self.high_risk_services.iter().any(|h| h == s));
        if admin_panel {
            RiskClass::HighRiskAdminPanel
        } else if self.high_risk_ports.contains(port) {
            RiskClass::HighRiskPort
        } else if let Some(service) = dangerous {
            let own_port = self
                .service_ports
                .get(service)
                .is_some_and(|ports| ports.contains(&port));
            if own_port {
                RiskClass::HighRiskPort
            } else {
                RiskClass::HighRiskService
            }
        } else {
            RiskClass::RiskPort
        }
    }

    /// Risk class of a known port row: the policy applied to its number and the
    /// service detected on it; a high-risk admin panel found by the last detection
    /// outranks both.
    pub fn risk_of(&self, row: &PortRow) -> RiskClass {
        let panel = row.class == Some(RiskClass::HighRiskAdminPanel);
        self.classify(row.port, row.service.as_deref(), panel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_unique_for_lookup() {
        assert!(HIGH_RISK_PORTS.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(HIGH_RISK_SERVICES.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(high_risk_service(6379), Some("redis"));
        assert_eq!(high_risk_service(80), None);
        assert_eq!(high_risk_ports().len() as usize, HIGH_RISK_PORTS.len());
    }

    #[test]
    fn classes() {
        let mut p = Policy::default();
        p.service_ports.insert("mqtt".into(), vec![1883]);
        p.service_ports.insert("redis".into(), vec![6379]);
        assert_eq!(
            p.classify(16379, Some("redis"), false),
            RiskClass::HighRiskService
        );
        assert_eq!(p.classify(6379, Some("redis"), false), RiskClass::HighRiskPort);
        assert_eq!(p.classify(6379, None, false), RiskClass::HighRiskPort);
        assert_eq!(
            p.classify(8080, Some("http"), true),
            RiskClass::HighRiskAdminPanel
        );
        assert_eq!(p.classify(8080, Some("http"), false), RiskClass::RiskPort);
        assert_eq!(p.classify(2222, Some("ssh"), false), RiskClass::RiskPort);
        assert_eq!(
            p.classify(1883, Some("mqtt"), false),
            RiskClass::HighRiskPort,
            "its default port"
        );
        assert_eq!(p.classify(11883, Some("mqtt"), false), RiskClass::HighRiskService);
    }
}
