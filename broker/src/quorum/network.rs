//! Raft RPCs in Kafka framing: the client side ([`PeerClient`], one per peer, made by
//! [`PeerFactory`]) and the server side ([`serve`], one request frame in, one response out).
//!
//! A request is a Kafka frame (i32 length, then a v2 request header) with the private API key
//! [`FJORD_RAFT`], far from Kafka's keys and never advertised, at version 0. Its body is
//! `kind: u8, from: u64, json_len: u32, json, tail`: `json` is the openraft request, and a
//! snapshot chunk's bytes travel raw in `tail` (JSON would quadruple them). A response is a
//! v1 response header, then `status: u8, json_len: u32, json`: status 0 carries the openraft
//! response, 1 the openraft `RaftError` the receiver returned, 3 a request version this
//! build does not read. Broken framing is an error, which closes the connection. The
//! cluster-id check (status 2) waits for the config that names the cluster (step 2).
//!
//! A client connects lazily, sends one RPC at a time (openraft 0.9 replicates sequentially
//! per target, and each `RaftNetwork` value owns its connection, so a vote never queues
//! behind a snapshot chunk), and reconnects after any error.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    ClientWriteError, InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::ClientWriteResponse;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::Raft;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::leader::{Described, Heartbeat, HeartbeatReply, LeaderState, ReplicaTimes};
use super::observer::{ObserveReply, ObserveRequest, Source};
use super::types::{MetadataCommand, QuorumTypes, VoterEndpoint};
use crate::error::{Error, Result};

/// The private API key of quorum RPCs.
pub const FJORD_RAFT: i16 = 0x7F00;
/// The only version of the body format so far.
pub const FJORD_RAFT_VERSION: i16 = 0;
/// Frames above this are refused before anything is allocated (Kafka's default
/// `socket.request.max.bytes`).
pub const MAX_FRAME_BYTES: usize = 100 << 20;

const KIND_APPEND: u8 = 1;
const KIND_VOTE: u8 = 2;
const KIND_SNAPSHOT_CHUNK: u8 = 3;
/// A metadata command planned on another voter, for the leader to write (KRaft forwards a
/// broker's writes to the active controller the same way).
const KIND_CLIENT_WRITE: u8 = 5;
/// A broker telling the active controller it is alive (Kafka's BrokerHeartbeat).
const KIND_HEARTBEAT: u8 = 6;
/// The leader's view of the quorum, for DescribeQuorum asked on another node.
const KIND_DESCRIBE: u8 = 7;
/// A broker-only node pulling committed entries (KRaft's observer Fetch), see [`super::observer`].
const KIND_OBSERVE: u8 = 8;

const STATUS_OK: u8 = 0;
const STATUS_RAFT_ERROR: u8 = 1;
/// The request's version is not [`FJORD_RAFT_VERSION`]: a newer peer learns it from the answer
/// instead of a closed connection.
const STATUS_UNSUPPORTED_VERSION: u8 = 3;

const CLIENT_ID: &str = "fjord-quorum";

type RpcResult<T, E> = std::result::Result<T, RPCError<u64, VoterEndpoint, E>>;

/// Reads a Kafka unsigned varint.
fn read_uvarint(buf: &[u8], pos: &mut usize) -> Result<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf
            .get(*pos)
            .ok_or_else(|| Error::Protocol("a quorum frame ends inside a varint".into()))?;
        *pos += 1;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(Error::Protocol(
        "a quorum frame has an overlong varint".into(),
    ))
}

fn take<'a>(buf: &'a [u8], pos: &mut usize, n: usize) -> Result<&'a [u8]> {
    let end = pos
        .checked_add(n)
        .filter(|&e| e <= buf.len())
        .ok_or_else(|| Error::Protocol(format!("a quorum frame is short of {n} bytes")))?;
    let out = &buf[*pos..end];
    *pos = end;
    Ok(out)
}

fn be<const N: usize>(buf: &[u8], pos: &mut usize) -> Result<[u8; N]> {
    Ok(take(buf, pos, N)?.try_into().expect("take returns N bytes"))
}

/// A request frame, without its length prefix.
fn encode_request(correlation_id: i32, kind: u8, from: u64, json: &[u8], tail: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + CLIENT_ID.len() + json.len() + tail.len());
    out.extend_from_slice(&FJORD_RAFT.to_be_bytes());
    out.extend_from_slice(&FJORD_RAFT_VERSION.to_be_bytes());
    out.extend_from_slice(&correlation_id.to_be_bytes());
    out.extend_from_slice(&(CLIENT_ID.len() as i16).to_be_bytes());
    out.extend_from_slice(CLIENT_ID.as_bytes());
    out.push(0); // no tagged fields
    out.push(kind);
    out.extend_from_slice(&from.to_be_bytes());
    out.extend_from_slice(&(json.len() as u32).to_be_bytes());
    out.extend_from_slice(json);
    out.extend_from_slice(tail);
    out
}

fn encode_response(correlation_id: i32, status: u8, json: &[u8]) -> Vec<u8> {
    encode_response_with_tail(correlation_id, status, json, &[])
}

/// A response whose raw `tail` follows the JSON (a snapshot for an observer).
fn encode_response_with_tail(correlation_id: i32, status: u8, json: &[u8], tail: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(10 + json.len() + tail.len());
    out.extend_from_slice(&correlation_id.to_be_bytes());
    out.push(0); // no tagged fields
    out.push(status);
    out.extend_from_slice(&(json.len() as u32).to_be_bytes());
    out.extend_from_slice(json);
    out.extend_from_slice(tail);
    out
}

/// What a request frame holds besides its header.
struct Request<'a> {
    correlation_id: i32,
    /// The request's body version; only [`FJORD_RAFT_VERSION`] has a body this build reads.
    version: i16,
    kind: u8,
    json: &'a [u8],
    tail: &'a [u8],
}

fn decode_request(frame: &[u8]) -> Result<Request<'_>> {
    let mut pos = 0;
    let api_key = i16::from_be_bytes(be(frame, &mut pos)?);
    let version = i16::from_be_bytes(be(frame, &mut pos)?);
    let correlation_id = i32::from_be_bytes(be(frame, &mut pos)?);
    if api_key != FJORD_RAFT {
        return Err(Error::Protocol(format!(
            "api key {api_key} is not a quorum RPC"
        )));
    }
    if version != FJORD_RAFT_VERSION {
        return Ok(Request {
            correlation_id,
            version,
            kind: 0,
            json: &[],
            tail: &[],
        });
    }
    let client_id_len = i16::from_be_bytes(be(frame, &mut pos)?);
    take(frame, &mut pos, client_id_len.max(0) as usize)?;
    for _ in 0..read_uvarint(frame, &mut pos)? {
        read_uvarint(frame, &mut pos)?;
        let size = read_uvarint(frame, &mut pos)?;
        take(frame, &mut pos, size as usize)?;
    }
    let [kind] = be(frame, &mut pos)?;
    let _from = u64::from_be_bytes(be(frame, &mut pos)?);
    let json_len = u32::from_be_bytes(be(frame, &mut pos)?);
    let json = take(frame, &mut pos, json_len as usize)?;
    Ok(Request {
        correlation_id,
        version,
        kind,
        json,
        tail: &frame[pos..],
    })
}

fn parse<T: DeserializeOwned>(json: &[u8], what: &str) -> Result<T> {
    serde_json::from_slice(json).map_err(|e| Error::Protocol(format!("quorum {what}: {e}")))
}

fn reply<T: Serialize, E: Serialize>(
    correlation_id: i32,
    result: std::result::Result<T, E>,
) -> Vec<u8> {
    // openraft's messages and errors are plain data: serializing them cannot fail.
    match result {
        Ok(r) => encode_response(
            correlation_id,
            STATUS_OK,
            &serde_json::to_vec(&r).expect("raft responses serialize"),
        ),
        Err(e) => encode_response(
            correlation_id,
            STATUS_RAFT_ERROR,
            &serde_json::to_vec(&e).expect("raft errors serialize"),
        ),
    }
}

/// Answers one quorum request frame (without its length prefix) on `raft`; heartbeats and
/// DescribeQuorum are answered from `leader` while this voter leads. An error means broken framing: the caller
/// closes the connection.
pub async fn serve(
    raft: &Raft<QuorumTypes>,
    leader: &LeaderState,
    source: &Source,
    frame: &[u8],
) -> Result<Vec<u8>> {
    let req = decode_request(frame)?;
    let c = req.correlation_id;
    if req.version != FJORD_RAFT_VERSION {
        return Ok(encode_response(c, STATUS_UNSUPPORTED_VERSION, &[]));
    }
    match req.kind {
        KIND_APPEND => {
            let rpc: AppendEntriesRequest<QuorumTypes> = parse(req.json, "append")?;
            Ok(reply(c, raft.append_entries(rpc).await))
        }
        KIND_VOTE => {
            let rpc: VoteRequest<u64> = parse(req.json, "vote")?;
            Ok(reply(c, raft.vote(rpc).await))
        }
        KIND_SNAPSHOT_CHUNK => {
            let mut rpc: InstallSnapshotRequest<QuorumTypes> = parse(req.json, "snapshot")?;
            rpc.data = req.tail.to_vec();
            Ok(reply(c, raft.install_snapshot(rpc).await))
        }
        KIND_CLIENT_WRITE => {
            let command: MetadataCommand = parse(req.json, "client write")?;
            Ok(reply(c, raft.client_write(command).await))
        }
        KIND_HEARTBEAT => {
            let hb: Heartbeat = parse(req.json, "heartbeat")?;
            let leads = raft.metrics().borrow().state.is_leader();
            if leads {
                leader.liveness.record(hb);
            }
            Ok(reply::<_, ()>(c, Ok(HeartbeatReply { leader: leads })))
        }
        KIND_DESCRIBE => {
            let described = leader.describe(&raft.metrics().borrow());
            Ok(reply::<_, ()>(c, Ok(described)))
        }
        KIND_OBSERVE => {
            let req: ObserveRequest = parse(req.json, "observe")?;
            let (answer, tail) = source.answer(raft, leader, req).await?;
            let json = serde_json::to_vec(&answer).expect("observer replies serialize");
            Ok(encode_response_with_tail(c, STATUS_OK, &json, &tail))
        }
        kind => Err(Error::Protocol(format!("unknown quorum RPC kind {kind}"))),
    }
}

/// What a forwarded write came back with.
pub enum Forwarded {
    Written(ClientWriteResponse<QuorumTypes>),
    /// The voter asked is not the leader (any more): ask again where it points.
    NotLeader(Option<u64>),
}

/// Makes one [`PeerClient`] per replication target.
#[derive(Debug, Clone)]
pub struct PeerFactory {
    /// This node's id, sent with every request.
    pub from: u64,
    /// Where replication acknowledgements are recorded (for DescribeQuorum).
    pub times: Arc<ReplicaTimes>,
}

impl RaftNetworkFactory<QuorumTypes> for PeerFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: u64, node: &VoterEndpoint) -> PeerClient {
        PeerClient {
            from: self.from,
            target,
            addr: node.to_string(),
            conn: None,
            correlation_id: 0,
            times: Some(self.times.clone()),
        }
    }
}

/// The connection to one peer.
pub struct PeerClient {
    from: u64,
    target: u64,
    addr: String,
    conn: Option<TcpStream>,
    correlation_id: i32,
    /// Replication clients record the follower's acknowledgements here.
    times: Option<Arc<ReplicaTimes>>,
}

/// Why a call failed: the peer could not be reached (openraft backs off) or the exchange
/// broke.
enum CallError {
    Unreachable(io::Error),
    Network(io::Error),
}

impl<E: std::error::Error> From<CallError> for RPCError<u64, VoterEndpoint, E> {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Unreachable(e) => RPCError::Unreachable(Unreachable::new(&e)),
            CallError::Network(e) => RPCError::Network(NetworkError::new(&e)),
        }
    }
}

impl PeerClient {
    /// Sends one request and returns the response's status and JSON.
    async fn call(
        &mut self,
        kind: u8,
        json: &[u8],
        tail: &[u8],
        ttl: Duration,
    ) -> std::result::Result<(u8, Vec<u8>), CallError> {
        let (status, json, tail) = self.call_with_tail(kind, json, tail, ttl).await?;
        if !tail.is_empty() {
            self.conn = None;
            return Err(CallError::Network(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("voter {} answered with a malformed frame", self.target),
            )));
        }
        Ok((status, json))
    }

    /// Sends one request and returns the response's status, JSON and raw tail.
    async fn call_with_tail(
        &mut self,
        kind: u8,
        json: &[u8],
        tail: &[u8],
        ttl: Duration,
    ) -> std::result::Result<(u8, Vec<u8>, Vec<u8>), CallError> {
        let result = tokio::time::timeout(ttl, self.exchange(kind, json, tail))
            .await
            .unwrap_or_else(|_| {
                Err(CallError::Network(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no answer from voter {} within {ttl:?}", self.target),
                )))
            });
        if result.is_err() {
            // The stream may hold half a request or an unread response.
            self.conn = None;
        }
        result
    }

    async fn exchange(
        &mut self,
        kind: u8,
        json: &[u8],
        tail: &[u8],
    ) -> std::result::Result<(u8, Vec<u8>, Vec<u8>), CallError> {
        if self.conn.is_none() {
            let stream = TcpStream::connect(&self.addr)
                .await
                .map_err(CallError::Unreachable)?;
            stream.set_nodelay(true).map_err(CallError::Unreachable)?;
            self.conn = Some(stream);
        }
        let conn = self.conn.as_mut().expect("connected above");
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let frame = encode_request(self.correlation_id, kind, self.from, json, tail);
        let net = CallError::Network;
        conn.write_all(&(frame.len() as i32).to_be_bytes())
            .await
            .map_err(net)?;
        conn.write_all(&frame).await.map_err(net)?;
        let len = conn.read_i32().await.map_err(net)?;
        if len < 10 || len as usize > MAX_FRAME_BYTES {
            return Err(net(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("voter {} answered with a {len}-byte frame", self.target),
            )));
        }
        let mut buf = vec![0u8; len as usize];
        conn.read_exact(&mut buf).await.map_err(net)?;
        let correlation_id = i32::from_be_bytes(buf[0..4].try_into().expect("4 bytes"));
        let json_len = u32::from_be_bytes(buf[6..10].try_into().expect("4 bytes")) as usize;
        if correlation_id != self.correlation_id || buf[4] != 0 || 10 + json_len > buf.len() {
            return Err(net(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("voter {} answered with a malformed frame", self.target),
            )));
        }
        let tail = buf.split_off(10 + json_len);
        Ok((buf[5], buf.split_off(10), tail))
    }

    /// One RPC: its request as JSON (plus a raw tail), its answer decoded.
    async fn rpc<Resp: DeserializeOwned, E: std::error::Error + DeserializeOwned>(
        &mut self,
        kind: u8,
        request: &impl Serialize,
        tail: &[u8],
        option: &RPCOption,
    ) -> RpcResult<Resp, RaftError<u64, E>> {
        let json = serde_json::to_vec(request).map_err(|e| NetworkError::new(&e))?;
        let (status, body) = self.call(kind, &json, tail, option.hard_ttl()).await?;
        match status {
            STATUS_OK => Ok(serde_json::from_slice(&body).map_err(|e| NetworkError::new(&e))?),
            STATUS_RAFT_ERROR => {
                let e: RaftError<u64, E> =
                    serde_json::from_slice(&body).map_err(|e| NetworkError::new(&e))?;
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            STATUS_UNSUPPORTED_VERSION => Err(RPCError::Network(NetworkError::new(
                &Error::Protocol(format!(
                    "voter {} does not speak quorum RPC version {FJORD_RAFT_VERSION}",
                    self.target
                )),
            ))),
            other => Err(RPCError::Network(NetworkError::new(&Error::Protocol(
                format!("voter {} answered with status {other}", self.target),
            )))),
        }
    }
}

impl PeerClient {
    /// A client of one voter outside openraft's replication, for forwarding writes to it.
    pub fn to_voter(from: u64, target: u64, node: &VoterEndpoint) -> Self {
        PeerClient {
            from,
            target,
            addr: node.to_string(),
            conn: None,
            correlation_id: 0,
            times: None,
        }
    }

    pub fn target(&self) -> u64 {
        self.target
    }

    /// Asks the voter to write `command` as the leader.
    pub async fn client_write(
        &mut self,
        command: &MetadataCommand,
        ttl: Duration,
    ) -> Result<Forwarded> {
        let json = serde_json::to_vec(command)
            .map_err(|e| Error::Metadata(format!("encoding a metadata command: {e}")))?;
        let (status, body) = self
            .call(KIND_CLIENT_WRITE, &json, &[], ttl)
            .await
            .map_err(|e| match e {
                CallError::Unreachable(e) | CallError::Network(e) => Error::Metadata(format!(
                    "forwarding a metadata write to voter {}: {e}",
                    self.target
                )),
            })?;
        match status {
            STATUS_OK => Ok(Forwarded::Written(parse(&body, "client write response")?)),
            STATUS_RAFT_ERROR => {
                let e: RaftError<u64, ClientWriteError<u64, VoterEndpoint>> =
                    parse(&body, "client write error")?;
                match e {
                    RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
                        Ok(Forwarded::NotLeader(f.leader_id))
                    }
                    e => Err(Error::Metadata(format!(
                        "voter {} refused a metadata write: {e}",
                        self.target
                    ))),
                }
            }
            other => Err(Error::Metadata(format!(
                "voter {} answered a metadata write with status {other}",
                self.target
            ))),
        }
    }
}

impl PeerClient {
    /// One request to the voter that answers it from its leader state: JSON in, JSON out.
    async fn ask<Resp: DeserializeOwned>(
        &mut self,
        kind: u8,
        request: &impl Serialize,
        ttl: Duration,
    ) -> Result<Resp> {
        let json = serde_json::to_vec(request).expect("quorum requests serialize");
        let (status, body) = self
            .call(kind, &json, &[], ttl)
            .await
            .map_err(|e| match e {
                CallError::Unreachable(e) | CallError::Network(e) => {
                    Error::Metadata(format!("asking voter {}: {e}", self.target))
                }
            })?;
        if status != STATUS_OK {
            return Err(Error::Metadata(format!(
                "voter {} answered quorum request {kind} with status {status}",
                self.target
            )));
        }
        parse(&body, "response")
    }

    /// Sends a heartbeat; returns whether the voter leads (and so kept it).
    pub async fn heartbeat(&mut self, hb: Heartbeat, ttl: Duration) -> Result<bool> {
        let reply: HeartbeatReply = self.ask(KIND_HEARTBEAT, &hb, ttl).await?;
        Ok(reply.leader)
    }

    /// The voter's view of the quorum if it leads.
    pub async fn describe(&mut self, ttl: Duration) -> Result<Option<Described>> {
        self.ask(KIND_DESCRIBE, &(), ttl).await
    }

    /// An observer's fetch: committed entries (or a snapshot, its bytes in the second value).
    pub async fn observe(
        &mut self,
        req: ObserveRequest,
        ttl: Duration,
    ) -> Result<(ObserveReply, Vec<u8>)> {
        let json = serde_json::to_vec(&req).expect("quorum requests serialize");
        let (status, body, tail) = self
            .call_with_tail(KIND_OBSERVE, &json, &[], ttl)
            .await
            .map_err(|e| match e {
                CallError::Unreachable(e) | CallError::Network(e) => {
                    Error::Metadata(format!("fetching metadata from voter {}: {e}", self.target))
                }
            })?;
        if status != STATUS_OK {
            return Err(Error::Metadata(format!(
                "voter {} answered a metadata fetch with status {status}",
                self.target
            )));
        }
        Ok((parse(&body, "observe response")?, tail))
    }
}

impl RaftNetwork<QuorumTypes> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<QuorumTypes>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<u64>, RaftError<u64>> {
        let acked = rpc
            .entries
            .last()
            .map(|e| e.log_id.index)
            .or(rpc.prev_log_id.map(|l| l.index));
        let response = self.rpc(KIND_APPEND, &rpc, &[], &option).await;
        if let (Ok(AppendEntriesResponse::Success), Some(times)) = (&response, &self.times) {
            times.acked(self.target, acked);
        }
        response
    }

    async fn install_snapshot(
        &mut self,
        mut rpc: InstallSnapshotRequest<QuorumTypes>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>> {
        let data = std::mem::take(&mut rpc.data);
        self.rpc(KIND_SNAPSHOT_CHUNK, &rpc, &data, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<u64>, RaftError<u64>> {
        self.rpc(KIND_VOTE, &rpc, &[], &option).await
    }
}

/// Serves quorum RPCs on `listener` until the returned task is aborted (which also ends its
/// connections). The broker will route these frames from its controller listener instead.
#[cfg(test)]
pub fn spawn_accept_loop(
    listener: tokio::net::TcpListener,
    raft: Raft<QuorumTypes>,
    leader: Arc<LeaderState>,
    source: Source,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        while let Ok((mut stream, _)) = listener.accept().await {
            let raft = raft.clone();
            let leader = leader.clone();
            let source = source.clone();
            connections.spawn(async move {
                loop {
                    let Ok(len) = stream.read_i32().await else {
                        return;
                    };
                    if len < 0 || len as usize > MAX_FRAME_BYTES {
                        return;
                    }
                    let mut frame = vec![0u8; len as usize];
                    if stream.read_exact(&mut frame).await.is_err() {
                        return;
                    }
                    let Ok(response) = serve(&raft, &leader, &source, &frame).await else {
                        return;
                    };
                    let len = (response.len() as i32).to_be_bytes();
                    if stream.write_all(&len).await.is_err()
                        || stream.write_all(&response).await.is_err()
                    {
                        return;
                    }
                }
            });
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_frames_decode_to_what_was_encoded() {
        let frame = encode_request(7, KIND_VOTE, 3, b"{\"a\":1}", b"tail");
        let req = decode_request(&frame).unwrap();
        assert_eq!(
            (req.correlation_id, req.kind, req.json, req.tail),
            (7, KIND_VOTE, &b"{\"a\":1}"[..], &b"tail"[..])
        );
    }

    #[tokio::test]
    async fn a_voter_that_is_down_is_unreachable() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let node = VoterEndpoint {
            host: "127.0.0.1".into(),
            port,
        };
        let mut client = PeerFactory {
            from: 1,
            times: Default::default(),
        }
        .new_client(2, &node)
        .await;
        let option = RPCOption::new(Duration::from_secs(1));
        let vote = VoteRequest::new(openraft::Vote::new(1, 1), None);
        match client.vote(vote, option).await {
            Err(RPCError::Unreachable(_)) => {}
            other => panic!("expected Unreachable, got {other:?}"),
        }
    }

    #[test]
    fn kafka_frames_and_short_frames_are_refused() {
        let mut frame = encode_request(7, KIND_VOTE, 3, b"{}", b"");
        frame[0..2].copy_from_slice(&18i16.to_be_bytes()); // ApiVersions
        assert!(decode_request(&frame).is_err());
        let frame = encode_request(7, KIND_VOTE, 3, b"{}", b"");
        assert!(decode_request(&frame[..frame.len() - 1]).is_err());
        // A later body version is answered, not dropped.
        let mut frame = encode_request(7, KIND_VOTE, 3, b"{}", b"");
        frame[2..4].copy_from_slice(&1i16.to_be_bytes());
        assert_eq!(decode_request(&frame).unwrap().version, 1);
    }
}
