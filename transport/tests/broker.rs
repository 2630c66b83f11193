//! The transport against Apache Kafka: versions negotiated, any request at any version it allows.

use std::time::Duration;

use kafka_protocol::{
    messages::{ApiKey, MetadataRequest},
    protocol::VersionRange,
};
use transport::{Connection, TransportError};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn negotiates_and_calls_metadata_at_every_version_kafka_and_we_share() {
    let broker = testkit::Broker::shared();
    runtime().block_on(async {
        let mut conn =
            Connection::connect(&broker.addr(), "transport-test", Duration::from_secs(10))
                .await
                .expect("connects");
        let fetch = conn.broker_versions().get(ApiKey::Fetch).expect("Fetch");
        assert!(fetch.min <= 4 && fetch.max >= 12, "{fetch}");
        let top = conn
            .version_of::<MetadataRequest>(VersionRange { min: 1, max: 12 })
            .expect("Metadata");
        for version in 4..=top {
            let request = MetadataRequest::default().with_allow_auto_topic_creation(false);
            let response = conn
                .call(&request, version, Duration::from_secs(10))
                .await
                .unwrap_or_else(|e| panic!("v{version}: {e}"));
            assert!(!response.brokers.is_empty(), "v{version}");
        }
        let err = conn
            .version_of::<MetadataRequest>(VersionRange { min: 40, max: 50 })
            .expect_err("no such version");
        assert!(
            matches!(err, TransportError::UnsupportedVersion { .. }),
            "{err}"
        );
    });
}

#[test]
fn a_port_nobody_listens_on_is_an_io_error_naming_the_address() {
    let addr = format!("127.0.0.1:{}", testkit::closed_port());
    let err = runtime()
        .block_on(Connection::connect(&addr, "t", Duration::from_secs(2)))
        .expect_err("nothing listens");
    assert!(err.to_string().starts_with(&addr), "{err}");
}
