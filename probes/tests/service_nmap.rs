//! The optional nmap matcher: with the operator's installed `nmap-service-probes`
//! loaded, a banner portwatch's own probes do not know is named from nmap's data;
//! without it, the same port is unknown. The server is this test's own listener on
//! 127.0.0.1 (ephemeral port).

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;

use portwatch_probes::detect::{detect, DetectOptions};
use portwatch_probes::nmap::NmapSource;
use portwatch_probes::panels::Rules;
use portwatch_probes::service::Limits;
use portwatch_probes::web::WebLimits;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

const NMAP_PROBES: &str = "/usr/share/nmap/nmap-service-probes";

fn options(nmap: Option<Arc<NmapSource>>) -> DetectOptions {
    DetectOptions {
        limits: Limits {
            read: std::time::Duration::from_millis(300),
            ..Limits::default()
        },
        web: WebLimits::default(),
        parallel: 8,
        panels: false,
        rules: Arc::new(Rules::builtin().unwrap()),
        nmap,
    }
}

#[tokio::test]
async fn nmap_banner_matches_name_what_portwatch_does_not_know() {
    if !Path::new(NMAP_PROBES).exists() {
        assert!(std::env::var_os("CI").is_none(), "the test command installs nmap");
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut c, _)) = listener.accept().await {
            tokio::spawn(async move {
                // A CVSup server's greeting: no probe of portwatch's knows it.
                let _ = c.write_all(b"OK 17 0 SNAP_16_1h CVSup server ready\n").await;
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            });
        }
    });

    let plain = detect(addr, &options(None)).await;
    assert_eq!(plain.service, "unknown");
    assert_eq!(plain.reason.as_deref(), Some("banner not recognised"));

    let nmap = Arc::new(NmapSource::open(Path::new(NMAP_PROBES)).unwrap());
    let with = detect(addr, &options(Some(nmap))).await;
    assert_eq!(with.service, "cvsup");
    assert_eq!(with.product.as_deref(), Some("CVSup"));
    assert_eq!(with.version.as_deref(), Some("SNAP_16_1h"));
    assert_eq!(with.matched_by, Some("nmap-service-probes"));
    assert_eq!(with.reason, None);
}
