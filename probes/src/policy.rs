//! The default high-risk port policy: dangerous services on their default ports.
//!
//! The list follows MISSION.md's risk classes. It is data, not code: the scheduler
//! probes exactly these ports in the `high_risk_ports` task unless the config
//! replaces the list.

use portwatch_events::PortSet;

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

/// The brief's risk classes, from least to most specific evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RiskClass {
    /// Any open port: to be audited.
    RiskPort,
    /// A port of the high-risk list (a dangerous service's default port).
    HighRiskPort,
    /// A dangerous service found by fingerprinting on a port outside that list.
    HighRiskService,
    /// A web management console.
    HighRiskAdminPanel,
}

impl RiskClass {
    /// The snake_case name used in output and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            RiskClass::RiskPort => "risk_port",
            RiskClass::HighRiskPort => "high_risk_port",
            RiskClass::HighRiskService => "high_risk_service",
            RiskClass::HighRiskAdminPanel => "high_risk_admin_panel",
        }
    }
}

/// What classification looks at: the policy's lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Dangerous default ports.
    pub high_risk_ports: PortSet,
    /// Dangerous services, wherever they listen.
    pub high_risk_services: Vec<String>,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            high_risk_ports: high_risk_ports(),
            high_risk_services: HIGH_RISK_SERVICES.iter().map(|s| s.to_string()).collect(),
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
            if crate::service::default_ports(service).contains(&port) {
                RiskClass::HighRiskPort
            } else {
                RiskClass::HighRiskService
            }
        } else {
            RiskClass::RiskPort
        }
    }
}

/// Ports tried by the TCP liveness check: commonly open or at least answered (RST)
/// on internet-facing hosts.
pub const LIVENESS_PORTS: &[u16] = &[22, 80, 443, 3389, 8080, 8443];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_unique_for_lookup() {
        assert!(HIGH_RISK_PORTS.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(high_risk_service(6379), Some("redis"));
        assert_eq!(high_risk_service(80), None);
        assert_eq!(high_risk_ports().len() as usize, HIGH_RISK_PORTS.len());
    }

    #[test]
    fn classes() {
        let p = Policy::default();
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
        assert!(HIGH_RISK_SERVICES.windows(2).all(|w| w[0] < w[1]));
        // Every listed service is a name some probe reports.
        for s in HIGH_RISK_SERVICES {
            assert!(
                crate::service::PROBES.iter().any(|p| p.name == *s)
                    || ["couchdb", "docker", "elasticsearch", "etcd", "kubernetes"].contains(s),
                "{s} is no probe's name"
            );
        }
    }
}
