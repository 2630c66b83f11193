//! One blocking Metadata request: which brokers a node lists, and where a topic's partitions live.
//!
//! A node accepts TCP connections before it serves requests, and a broker is listed in metadata only
//! once the controller has unfenced it, so "every node lists every node" is the readiness test.
//! The same request tells tests where leaders and replicas are, independently of the code under test.

use std::{
    io::{Read as _, Write as _},
    net::{TcpStream, ToSocketAddrs as _},
    time::Duration,
};

use bytes::{Buf as _, BytesMut};
use kafka_protocol::{
    messages::{
        metadata_request::MetadataRequestTopic, ApiKey, MetadataRequest, MetadataResponse,
        RequestHeader, ResponseHeader, TopicName,
    },
    protocol::{Decodable as _, Encodable as _, StrBytes},
};

/// Metadata v4: the oldest version Kafka 4 still serves (KIP-896), and enough for ids and replicas.
const VERSION: i16 = 4;

/// One partition's placement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// The partition index.
    pub partition: i32,
    /// The leader's node id (-1: none).
    pub leader: i32,
    /// Every replica's node id.
    pub replicas: Vec<i32>,
    /// The in-sync replicas.
    pub isr: Vec<i32>,
}

/// The broker ids that the node at `addr` lists, sorted.
pub fn brokers(addr: &str, timeout: Duration) -> Result<Vec<i32>, String> {
    let response = metadata(addr, Some(Vec::new()), timeout)?;
    let mut ids: Vec<i32> = response.brokers.iter().map(|b| b.node_id.0).collect();
    ids.sort_unstable();
    Ok(ids)
}

/// The partitions of `topic` as the node at `addr` sees them, by index; an error if the topic is
/// unknown.
pub fn partitions(addr: &str, topic: &str, timeout: Duration) -> Result<Vec<Partition>, String> {
    let wanted = MetadataRequestTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(topic.to_string()))));
    let response = metadata(addr, Some(vec![wanted]), timeout)?;
    let found = response
        .topics
        .iter()
        .find(|t| t.name.as_ref().map(|n| n.0.as_str()) == Some(topic))
        .ok_or_else(|| format!("{addr} returned no metadata for {topic}"))?;
    if found.error_code != 0 {
        return Err(format!(
            "{addr}: metadata for {topic} failed with error code {}",
            found.error_code
        ));
    }
    let mut out: Vec<Partition> = found
        .partitions
        .iter()
        .map(|p| Partition {
            partition: p.partition_index,
            leader: p.leader_id.0,
            replicas: p.replica_nodes.iter().map(|r| r.0).collect(),
            isr: p.isr_nodes.iter().map(|r| r.0).collect(),
        })
        .collect();
    out.sort_by_key(|p| p.partition);
    Ok(out)
}

/// The node id of the controller `addr` reports (-1 while unknown).
pub fn controller(addr: &str, timeout: Duration) -> Result<i32, String> {
    Ok(metadata(addr, Some(Vec::new()), timeout)?.controller_id.0)
}

fn metadata(
    addr: &str,
    topics: Option<Vec<MetadataRequestTopic>>,
    timeout: Duration,
) -> Result<MetadataResponse, String> {
    let request = MetadataRequest::default()
        .with_topics(topics)
        .with_allow_auto_topic_creation(false);
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::Metadata as i16)
        .with_request_api_version(VERSION)
        .with_correlation_id(1)
        .with_client_id(Some(StrBytes::from_static_str("localkafka-probe")));
    let mut body = BytesMut::new();
    header
        .encode(&mut body, ApiKey::Metadata.request_header_version(VERSION))
        .and_then(|()| request.encode(&mut body, VERSION))
        .map_err(|e| format!("encoding a metadata request: {e}"))?;

    let socket = addr
        .to_socket_addrs()
        .map_err(|e| format!("{addr}: {e}"))?
        .next()
        .ok_or_else(|| format!("{addr}: no address"))?;
    let mut stream =
        TcpStream::connect_timeout(&socket, timeout).map_err(|e| format!("{addr}: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| format!("{addr}: {e}"))?;
    let size = i32::try_from(body.len()).map_err(|_| "request too large".to_string())?;
    stream
        .write_all(&size.to_be_bytes())
        .and_then(|()| stream.write_all(&body))
        .map_err(|e| format!("{addr}: writing: {e}"))?;
    let mut len = [0u8; 4];
    stream
        .read_exact(&mut len)
        .map_err(|e| format!("{addr}: reading: {e}"))?;
    let len = usize::try_from(i32::from_be_bytes(len)).map_err(|_| "negative frame".to_string())?;
    if len > 16 * 1024 * 1024 {
        return Err(format!(
            "{addr}: a {len} byte metadata response is not plausible"
        ));
    }
    let mut frame = vec![0u8; len];
    stream
        .read_exact(&mut frame)
        .map_err(|e| format!("{addr}: reading: {e}"))?;
    let mut buf = bytes::Bytes::from(frame);
    ResponseHeader::decode(&mut buf, ApiKey::Metadata.response_header_version(VERSION))
        .map_err(|e| format!("{addr}: decoding the response header: {e}"))?;
    let response = MetadataResponse::decode(&mut buf, VERSION)
        .map_err(|e| format!("{addr}: decoding metadata: {e}"))?;
    if buf.has_remaining() {
        return Err(format!(
            "{addr}: {} bytes left after metadata",
            buf.remaining()
        ));
    }
    Ok(response)
}
