//! A TCP proxy per broker in front of one consumer, so the harness can cut that consumer off the
//! cluster for a few seconds while every other client keeps its connections.
//!
//! The consumer bootstraps from the proxies. Metadata and FindCoordinator answers are rewritten to
//! name the proxy of each broker (by node id), so every connection the consumer opens later also goes
//! through one (the approach of consumer/tests/rebalance.rs, here for a whole cluster). A cut closes
//! every proxied connection and refuses new ones until it ends.

use std::{
    collections::HashMap,
    io::{Read as _, Write as _},
    net::TcpStream as StdStream,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use bytes::{Buf as _, BufMut as _, Bytes, BytesMut};
use kafka_protocol::{
    messages::{
        ApiKey, FindCoordinatorRequest, FindCoordinatorResponse, GroupId, MetadataResponse,
        RequestHeader, ResponseHeader,
    },
    protocol::{Decodable as _, Encodable as _, StrBytes},
};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{tcp::OwnedReadHalf, TcpListener, TcpStream},
};
use tokio_util::sync::CancellationToken;

/// Node id -> the proxy's port for it.
type Ports = Arc<HashMap<i32, u16>>;

/// One listener per broker, all cut together.
pub struct ProxySet {
    ports: Ports,
    cut: Arc<AtomicBool>,
    /// Cancelled (and replaced) by a cut: every live relay watches the current one.
    generation: Arc<Mutex<CancellationToken>>,
    stop: CancellationToken,
}

impl ProxySet {
    /// Binds a proxy on 127.0.0.1 for each `(node id, broker address)`.
    pub async fn start(brokers: &[(i32, String)]) -> anyhow::Result<Self> {
        let mut listeners = Vec::new();
        let mut ports = HashMap::new();
        for (id, upstream) in brokers {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            ports.insert(*id, listener.local_addr()?.port());
            listeners.push((listener, upstream.clone()));
        }
        let set = Self {
            ports: Arc::new(ports),
            cut: Arc::new(AtomicBool::new(false)),
            generation: Arc::new(Mutex::new(CancellationToken::new())),
            stop: CancellationToken::new(),
        };
        for (listener, upstream) in listeners {
            let (ports, cut, generation, stop) = (
                Arc::clone(&set.ports),
                Arc::clone(&set.cut),
                Arc::clone(&set.generation),
                set.stop.clone(),
            );
            tokio::spawn(async move {
                loop {
                    let accepted = tokio::select! {
                        a = listener.accept() => a,
                        _ = stop.cancelled() => return,
                    };
                    let Ok((client, _)) = accepted else { continue };
                    if cut.load(Ordering::SeqCst) {
                        // Cut off: the connection is refused as a dead network would (closed at once).
                        drop(client);
                        continue;
                    }
                    let token = match generation.lock() {
                        Ok(g) => g.clone(),
                        Err(_) => continue,
                    };
                    let (upstream, ports) = (upstream.clone(), Arc::clone(&ports));
                    tokio::spawn(async move {
                        let connect = tokio::time::timeout(
                            Duration::from_secs(5),
                            TcpStream::connect(&upstream),
                        );
                        if let Ok(Ok(broker)) = connect.await {
                            tokio::select! {
                                _ = relay(client, broker, &ports) => {}
                                _ = token.cancelled() => {}
                            }
                        }
                    });
                }
            });
        }
        Ok(set)
    }

    /// `127.0.0.1:port,…`: the consumer's `KAFKA_BROKERS`.
    pub fn bootstrap(&self) -> String {
        let mut ports: Vec<_> = self.ports.iter().collect();
        ports.sort();
        ports
            .iter()
            .map(|(_, p)| format!("127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Starts a cut: closes every proxied connection and refuses new ones.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        if let Ok(mut g) = self.generation.lock() {
            g.cancel();
            *g = CancellationToken::new();
        }
    }

    /// Ends the cut.
    pub fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for ProxySet {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Ok(g) = self.generation.lock() {
            g.cancel();
        }
    }
}

/// Larger than any frame here (the 1 MiB poison record plus a fetch's overhead).
const MAX_FRAME: usize = 64 * 1024 * 1024;

async fn read_frame(r: &mut OwnedReadHalf) -> Option<Bytes> {
    let size = usize::try_from(r.read_i32().await.ok()?).ok()?;
    if size > MAX_FRAME {
        return None;
    }
    let mut body = BytesMut::zeroed(size);
    r.read_exact(&mut body).await.ok()?;
    Some(body.freeze())
}

/// What a request on one connection was, by correlation id.
type InFlight = Arc<Mutex<HashMap<i32, (i16, i16)>>>;

async fn relay(client: TcpStream, broker: TcpStream, ports: &Ports) {
    let _ = (client.set_nodelay(true), broker.set_nodelay(true));
    let (mut client_r, mut client_w) = client.into_split();
    let (mut broker_r, mut broker_w) = broker.into_split();
    let in_flight: InFlight = Arc::default();
    let requests = Arc::clone(&in_flight);
    let upstream = tokio::spawn(async move {
        while let Some(frame) = read_frame(&mut client_r).await {
            // Request header: api key, api version, correlation id.
            if frame.len() >= 8 {
                let mut head = &frame[..8];
                let (api, version, id) = (head.get_i16(), head.get_i16(), head.get_i32());
                if let Ok(mut m) = requests.lock() {
                    m.insert(id, (api, version));
                }
            }
            if write_frame(&mut broker_w, &frame).await.is_err() {
                break;
            }
        }
    });
    while let Some(frame) = read_frame(&mut broker_r).await {
        let id = frame.get(..4).map_or(-1, |mut b| b.get_i32());
        let request = in_flight.lock().ok().and_then(|mut m| m.remove(&id));
        let frame = match request {
            Some((api, version)) => rewrite(api, version, frame, ports),
            None => frame,
        };
        if write_frame(&mut client_w, &frame).await.is_err() {
            break;
        }
    }
    upstream.abort();
}

async fn write_frame(w: &mut tokio::net::tcp::OwnedWriteHalf, frame: &[u8]) -> std::io::Result<()> {
    let mut out = BytesMut::with_capacity(frame.len() + 4);
    out.put_i32(frame.len() as i32);
    out.extend_from_slice(frame);
    w.write_all(&out).await
}

/// Points the brokers of Metadata and the coordinator of FindCoordinator at their proxies. A broker
/// without a proxy (none here) keeps its address.
fn rewrite(api: i16, version: i16, frame: Bytes, ports: &Ports) -> Bytes {
    let Ok(key) = ApiKey::try_from(api) else {
        return frame;
    };
    if !matches!(key, ApiKey::Metadata | ApiKey::FindCoordinator) {
        return frame;
    }
    let header_version = key.response_header_version(version);
    let mut body = frame.clone();
    let Ok(header) = ResponseHeader::decode(&mut body, header_version) else {
        return frame;
    };
    let host = StrBytes::from_static_str("127.0.0.1");
    let mut out = BytesMut::new();
    let encoded = if key == ApiKey::Metadata {
        let Ok(mut r) = MetadataResponse::decode(&mut body, version) else {
            return frame;
        };
        for b in r.brokers.iter_mut() {
            if let Some(&port) = ports.get(&b.node_id.0) {
                b.host = host.clone();
                b.port = i32::from(port);
            }
        }
        header
            .encode(&mut out, header_version)
            .and_then(|()| r.encode(&mut out, version))
    } else {
        let Ok(mut r) = FindCoordinatorResponse::decode(&mut body, version) else {
            return frame;
        };
        // Up to v3 one coordinator at the top level, from v4 one per key.
        if version < 4 && r.error_code == 0 {
            if let Some(&port) = ports.get(&r.node_id.0) {
                r.host = host.clone();
                r.port = i32::from(port);
            }
        }
        for c in r.coordinators.iter_mut().filter(|c| c.error_code == 0) {
            if let Some(&port) = ports.get(&c.node_id.0) {
                c.host = host.clone();
                c.port = i32::from(port);
            }
        }
        header
            .encode(&mut out, header_version)
            .and_then(|()| r.encode(&mut out, version))
    };
    match encoded {
        Ok(()) => out.freeze(),
        Err(_) => frame,
    }
}

/// The node id of `group`'s coordinator, asked of the broker at `addr` (FindCoordinator v3, blocking).
pub fn coordinator(addr: &str, group: &str, timeout: Duration) -> Result<i32, String> {
    const VERSION: i16 = 3;
    let request = FindCoordinatorRequest::default()
        .with_key(GroupId(StrBytes::from_string(group.to_string())).0)
        .with_key_type(0);
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::FindCoordinator as i16)
        .with_request_api_version(VERSION)
        .with_correlation_id(1)
        .with_client_id(Some(StrBytes::from_static_str("chaos")));
    let mut body = BytesMut::new();
    header
        .encode(
            &mut body,
            ApiKey::FindCoordinator.request_header_version(VERSION),
        )
        .and_then(|()| request.encode(&mut body, VERSION))
        .map_err(|e| format!("encoding FindCoordinator: {e}"))?;
    let socket = addr
        .parse::<std::net::SocketAddr>()
        .map_err(|e| format!("{addr}: {e}"))?;
    let mut stream = StdStream::connect_timeout(&socket, timeout).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| e.to_string())?;
    let size = i32::try_from(body.len()).map_err(|_| "request too large".to_string())?;
    stream
        .write_all(&size.to_be_bytes())
        .and_then(|()| stream.write_all(&body))
        .map_err(|e| e.to_string())?;
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).map_err(|e| e.to_string())?;
    let len = usize::try_from(i32::from_be_bytes(len)).map_err(|_| "negative frame".to_string())?;
    if len > 1024 * 1024 {
        return Err(format!("a {len} byte FindCoordinator answer"));
    }
    let mut frame = vec![0u8; len];
    stream.read_exact(&mut frame).map_err(|e| e.to_string())?;
    let mut buf = Bytes::from(frame);
    ResponseHeader::decode(
        &mut buf,
        ApiKey::FindCoordinator.response_header_version(VERSION),
    )
    .map_err(|e| e.to_string())?;
    let r = FindCoordinatorResponse::decode(&mut buf, VERSION).map_err(|e| e.to_string())?;
    if r.error_code != 0 {
        return Err(format!("FindCoordinator error {}", r.error_code));
    }
    Ok(r.node_id.0)
}
