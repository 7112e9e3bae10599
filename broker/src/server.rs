//! Listeners, connections and the broker's background tasks.
//!
//! A connection reads one size-prefixed request at a time, checks the size against
//! `socket.request.max.bytes` before allocating, hands the frame to [`crate::api::handle`], and
//! writes the response before reading the next request, so responses leave in request order as
//! Kafka requires. Broken framing or an undecodable request closes that one connection.
//! Record data in fetch responses goes from the segment files to the socket with sendfile(2).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader, BufWriter, Interest};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::api::{self, Chunk};
use crate::broker::{Broker, Endpoint};
use crate::config::BrokerConfig;
use crate::error::{Error, Result};
use crate::log::FileSlice;

/// Binds the configured client listeners. A listener without a host binds every interface
/// (IPv6 dual-stack where available, so both `127.0.0.1` and `::1` reach it); `localhost`
/// binds both loopback addresses, because librdkafka tries `::1` first.
pub async fn bind(config: &BrokerConfig) -> Result<Vec<TcpListener>> {
    bind_each(&config.listeners).await
}

/// Binds the controller listeners (`controller.listener.names`), where other voters send
/// quorum RPCs.
pub async fn bind_controllers(config: &BrokerConfig) -> Result<Vec<TcpListener>> {
    bind_each(&config.controller_listeners).await
}

async fn bind_each(listeners: &[crate::config::Listener]) -> Result<Vec<TcpListener>> {
    let mut out = Vec::new();
    for l in listeners {
        let addrs: Vec<String> = match l.host.as_str() {
            "" | "0.0.0.0" | "::" => {
                vec![format!("[::]:{}", l.port), format!("0.0.0.0:{}", l.port)]
            }
            "localhost" => vec![format!("127.0.0.1:{}", l.port), format!("[::1]:{}", l.port)],
            h if h.contains(':') => vec![format!("[{h}]:{}", l.port)],
            h => vec![format!("{h}:{}", l.port)],
        };
        let mut bound_any = false;
        let mut last_err = None;
        for a in &addrs {
            // With port 0 the second address must reuse the port the first one got.
            let a = match (l.port, out.last()) {
                (0, Some(first)) if bound_any => {
                    let first: &TcpListener = first;
                    let port = first.local_addr()?.port();
                    a.replace(":0", &format!(":{port}"))
                }
                _ => a.clone(),
            };
            match TcpListener::bind(&a).await {
                Ok(s) => {
                    out.push(s);
                    bound_any = true;
                    if matches!(l.host.as_str(), "" | "0.0.0.0" | "::") {
                        break; // Dual-stack [::] already covers IPv4.
                    }
                }
                Err(e) => last_err = Some((a, e)),
            }
        }
        if !bound_any {
            let (a, e) = last_err.expect("at least one address was tried");
            return Err(Error::config("listeners", format!("cannot bind {a}: {e}")));
        }
    }
    Ok(out)
}

/// What clients are told to connect to: `advertised.listeners`, else the first listener with
/// its bound port (so `:0` works in tests) and `localhost` for a wildcard host.
fn controller_endpoint(config: &BrokerConfig, controllers: &[TcpListener]) -> Result<Endpoint> {
    let first = controllers
        .first()
        .ok_or_else(|| Error::config("controller.listener.names", "no controller listener"))?;
    let port = first.local_addr()?.port() as i32;
    let host = match config.controller_listeners.first().map(|l| l.host.as_str()) {
        None | Some("" | "0.0.0.0" | "::") => "localhost".to_string(),
        Some(h) => h.to_string(),
    };
    Ok(Endpoint { host, port })
}

pub fn advertised_endpoint(config: &BrokerConfig, listeners: &[TcpListener]) -> Result<Endpoint> {
    if let Some(a) = config.advertised_listeners.first() {
        if a.port != 0 {
            return Ok(Endpoint {
                host: if a.host.is_empty() {
                    "localhost".into()
                } else {
                    a.host.clone()
                },
                port: a.port as i32,
            });
        }
    }
    let first = config
        .listeners
        .first()
        .ok_or_else(|| Error::config("listeners", "no client listener"))?;
    let port = listeners
        .first()
        .map(|l| l.local_addr().map(|a| a.port()))
        .transpose()?
        .unwrap_or(first.port);
    let host = match first.host.as_str() {
        "" | "0.0.0.0" | "::" => "localhost".to_string(),
        h => h.to_string(),
    };
    Ok(Endpoint {
        host,
        port: port as i32,
    })
}

/// Runs a broker on already-bound listeners until `shutdown` completes, then shuts down
/// cleanly (logs flushed, indexes saved, directory marked clean).
pub async fn run(
    listeners: Vec<TcpListener>,
    config: BrokerConfig,
    shutdown: impl Future,
) -> Result<()> {
    let controllers = bind_controllers(&config).await?;
    run_with(listeners, controllers, config, shutdown).await
}

/// [`run`] on already-bound controller listeners too (tests bind port 0 and name the ports in
/// `controller.quorum.voters`).
pub async fn run_with(
    listeners: Vec<TcpListener>,
    controllers: Vec<TcpListener>,
    config: BrokerConfig,
    shutdown: impl Future,
) -> Result<()> {
    let endpoint = if config.broker {
        advertised_endpoint(&config, &listeners)?
    } else {
        // A controller-only node is never registered as a broker: its "endpoint" is where the
        // other voters reach it.
        controller_endpoint(&config, &controllers)?
    };
    let mut tasks = JoinSet::new();
    // The quorum starts first and its controller listeners serve it at once: a voter's first
    // image comes from its peers, which must reach it before this broker can start.
    let metadata = Arc::new(crate::metadata::Metadata::start(&config, &endpoint).await?);
    let serving = Serving::default();
    for l in controllers {
        tracing::info!(addr = %l.local_addr()?, "listening for the metadata quorum");
        tasks.spawn(quorum_accept_loop(
            l,
            metadata.clone(),
            serving.clone(),
            config.socket_request_max_bytes,
        ));
    }
    let broker = Broker::start(config, endpoint, metadata).await?;
    let _ = serving.set(broker.clone());
    for l in listeners {
        tracing::info!(addr = %l.local_addr()?, "listening for Kafka clients");
        tasks.spawn(accept_loop(l, broker.clone()));
    }
    tasks.spawn(broker.clone().apply_published_images());
    if let Some(addr) = &broker.config.metrics_listener {
        match crate::metrics::bind(addr).await {
            Ok(l) => {
                tracing::info!(addr = %l.local_addr()?, "serving Prometheus metrics at /metrics");
                tasks.spawn(crate::metrics::serve(l, broker.clone()));
            }
            Err(e) => {
                return Err(Error::config(
                    "fjord.metrics.listener",
                    format!("cannot bind {addr}: {e}"),
                ));
            }
        }
    }
    // The controller's duties run on every voter and act while it leads the quorum; a
    // controller-only node hosts nothing and has no broker duties.
    tasks.spawn(crate::cluster::fence_and_unfence(broker.clone()));
    tasks.spawn(crate::cluster::rebalance_leaders(broker.clone()));
    if broker.config.broker {
        tasks.spawn(group_timers(broker.clone()));
        tasks.spawn(housekeeping(broker.clone()));
        tasks.spawn(crate::cluster::heartbeats(broker.clone()));
        tasks.spawn(crate::cluster::isr_changes(broker.clone()));
    }
    shutdown.await;
    tracing::info!("shutting down");
    if broker.config.broker {
        crate::cluster::controlled_shutdown(&broker).await;
    }
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    broker.shutdown().await?;
    tracing::info!("shut down cleanly");
    Ok(())
}

async fn accept_loop(listener: TcpListener, broker: Arc<Broker>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    connections.spawn(serve_connection(stream, peer, broker.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next() => {}
        }
    }
}

/// The broker of this node once it serves; the controller listeners start before it.
type Serving = Arc<std::sync::OnceLock<Arc<Broker>>>;

/// Serves a controller listener: quorum RPCs from the other voters and observers, and the
/// controller's Kafka APIs (ApiVersions, DescribeCluster, DescribeQuorum) for admin clients
/// bootstrapped with `bootstrap.controllers` (`kafka-metadata-quorum.sh
/// --bootstrap-controller`), once this node serves.
async fn quorum_accept_loop(
    listener: TcpListener,
    metadata: Arc<crate::metadata::Metadata>,
    serving: Serving,
    max: usize,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    connections.spawn(serve_quorum_connection(
                        stream,
                        peer,
                        metadata.clone(),
                        serving.clone(),
                        max,
                    ));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next() => {}
        }
    }
}

#[tracing::instrument(name = "quorum_connection", skip_all, fields(peer = %peer))]
async fn serve_quorum_connection(
    stream: TcpStream,
    peer: SocketAddr,
    metadata: Arc<crate::metadata::Metadata>,
    serving: Serving,
    max: usize,
) {
    let (rd, wr) = stream.into_split();
    let mut reader = BufReader::with_capacity(64 * 1024, rd);
    let mut writer = BufWriter::with_capacity(64 * 1024, wr);
    let conn = Connection {
        peer,
        controller: true,
    };
    while let Some(frame) = read_frame(&mut reader, max).await {
        let raft = frame.len() >= 2
            && i16::from_be_bytes([frame[0], frame[1]]) == crate::quorum::network::FJORD_RAFT;
        let response = if raft {
            match metadata.serve_raft(&frame).await {
                Ok(r) => {
                    let mut out = BytesMut::with_capacity(4 + r.len());
                    out.put_i32(r.len() as i32);
                    out.put_slice(&r);
                    vec![Chunk::Mem(out.freeze())]
                }
                Err(e) => {
                    tracing::warn!(error = %e, "closing a quorum connection: bad request");
                    return;
                }
            }
        } else {
            let Some(broker) = serving.get() else {
                tracing::debug!(
                    "a Kafka request on the controller listener before this node serves"
                );
                return;
            };
            match api::handle(broker, frame, &conn).await {
                Ok(Some(r)) => r,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "closing a controller connection: bad request");
                    return;
                }
            }
        };
        if let Err(e) = write_response(&mut writer, &response).await {
            tracing::debug!(error = %e, "quorum connection closed while writing");
            return;
        }
    }
}

/// Per-connection facts the handlers need.
#[derive(Debug, Clone)]
pub struct Connection {
    pub peer: SocketAddr,
    /// Accepted on a controller listener: only the controller's APIs are served (KIP-919's
    /// `--bootstrap-controller`).
    pub controller: bool,
}

#[tracing::instrument(name = "connection", skip_all, fields(peer = %peer))]
async fn serve_connection(stream: TcpStream, peer: SocketAddr, broker: Arc<Broker>) {
    let (rd, wr) = stream.into_split();
    let mut reader = BufReader::with_capacity(64 * 1024, rd);
    let mut writer = BufWriter::with_capacity(64 * 1024, wr);
    let conn = Connection {
        peer,
        controller: false,
    };
    let max = broker.config.socket_request_max_bytes;
    let idle = Duration::from_millis(broker.config.connections_max_idle_ms);
    loop {
        // Between requests the connection is idle; so is a client that sends part of a request
        // and stops. Either way it is closed after `connections.max.idle.ms`, as Kafka does, and
        // whatever it held (segment files of a deleted topic) is released.
        let frame = match tokio::time::timeout(idle, read_frame(&mut reader, max)).await {
            Ok(Some(frame)) => frame,
            Ok(None) => return,
            Err(_) => {
                tracing::debug!(idle_ms = idle.as_millis() as u64, "closing idle connection");
                return;
            }
        };
        match api::handle(&broker, frame, &conn).await {
            Ok(Some(response)) => {
                // A client that stops reading would hold this task, its response and the
                // segment files in it forever: a write that makes no progress for
                // `connections.max.idle.ms` closes the connection too.
                match tokio::time::timeout(idle, write_response(&mut writer, &response)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "connection closed while writing a response");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(
                            idle_ms = idle.as_millis() as u64,
                            "closing a connection that stopped reading its responses"
                        );
                        return;
                    }
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "closing connection: bad request");
                let _ = writer.flush().await;
                return;
            }
        }
    }
}

/// Reads one size-prefixed request; `None` when the client closed the connection or sent a
/// size out of bounds (checked before anything is allocated).
async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R, max: usize) -> Option<Bytes> {
    let len = reader.read_i32().await.ok()?;
    if len < 0 || len as usize > max {
        tracing::warn!(len, max, "closing connection: request size out of bounds");
        return None;
    }
    let mut frame = BytesMut::zeroed(len as usize);
    if let Err(e) = reader.read_exact(&mut frame).await {
        tracing::debug!(error = %e, "connection closed mid-request");
        return None;
    }
    Some(frame.freeze())
}

async fn write_response(
    writer: &mut BufWriter<OwnedWriteHalf>,
    chunks: &[Chunk],
) -> std::io::Result<()> {
    for chunk in chunks {
        match chunk {
            Chunk::Mem(b) => writer.write_all(b).await?,
            Chunk::File(f) => {
                writer.flush().await?;
                send_file(writer.get_ref().as_ref(), f).await?;
            }
        }
    }
    writer.flush().await
}

/// Sends a file range to the socket with sendfile(2), waiting for the socket whenever its
/// buffer is full. A file shorter than the range (truncated underneath) is an error: the frame
/// would be incomplete, so the connection must close.
async fn send_file(socket: &TcpStream, slice: &FileSlice) -> std::io::Result<()> {
    let mut offset = slice.position;
    let end = slice.position + slice.len;
    while offset < end {
        socket.writable().await?;
        let sent = socket.try_io(Interest::WRITABLE, || {
            let count = (end - offset).min(1 << 30) as usize;
            rustix::fs::sendfile(socket, &*slice.file, Some(&mut offset), count)
                .map_err(std::io::Error::from)
        });
        match sent {
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "segment file ended inside a fetched range",
                ))
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

async fn group_timers(broker: Arc<Broker>) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tick.tick().await;
        broker.groups.tick();
    }
}

async fn housekeeping(broker: Arc<Broker>) {
    let every = Duration::from_millis(broker.config.retention_check_interval_ms);
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        let b = broker.clone();
        let deleted = tokio::task::spawn_blocking(move || b.replicas.enforce_retention())
            .await
            .unwrap_or(0);
        if deleted > 0 {
            tracing::info!(segments = deleted, "retention deleted old segments");
        }
    }
}
