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
}
