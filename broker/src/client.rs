//! A small Kafka client for what brokers ask each other (a follower's Fetch to its leader),
//! framed and encoded with `kafka-protocol` like the server side. One request at a time per
//! connection; a response frame is checked against a size limit before it is allocated.

use std::net::SocketAddr;

use bytes::{Buf, BufMut, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::error::{Error, Result};

pub struct Client {
    stream: BufReader<TcpStream>,
    peer: SocketAddr,
    correlation: i32,
    client_id: StrBytes,
    /// The largest response frame accepted.
    max_frame: usize,
}

impl Client {
    pub async fn connect(peer: SocketAddr, client_id: &str, max_frame: usize) -> Result<Self> {
        let stream = TcpStream::connect(peer).await?;
        stream.set_nodelay(true)?;
        Ok(Client {
            stream: BufReader::new(stream),
            peer,
            correlation: 0,
            client_id: StrBytes::from_string(client_id.to_string()),
            max_frame,
        })
    }

    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Sends one request and reads its response.
    pub async fn send<R>(&mut self, req: &R, version: i16) -> Result<R::Response>
    where
        R: Request + Encodable,
        R::Response: Decodable + HeaderVersion,
    {
        self.correlation = self.correlation.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(self.client_id.clone()));
        let mut frame = BytesMut::with_capacity(256);
        frame.put_i32(0);
        let encode = |frame: &mut BytesMut| -> anyhow::Result<()> {
            header.encode(frame, R::header_version(version))?;
            req.encode(frame, version)
        };
        encode(&mut frame)
            .map_err(|e| Error::Protocol(format!("encoding request {} v{version}: {e}", R::KEY)))?;
        let len = (frame.len() - 4) as i32;
        frame[0..4].copy_from_slice(&len.to_be_bytes());
        self.stream.get_mut().write_all(&frame).await?;

        let len = self.stream.read_i32().await?;
        if len < 0 || len as usize > self.max_frame {
            return Err(Error::Protocol(format!(
                "{}: a {len}-byte response frame (limit {})",
                self.peer, self.max_frame
            )));
        }
        let mut buf = vec![0u8; len as usize];
        self.stream.read_exact(&mut buf).await?;
        let mut resp = bytes::Bytes::from(buf);
        let header_version = if R::KEY == ApiKey::ApiVersions as i16 {
            0 // KIP-511: ApiVersions responses always use header v0.
        } else {
            <R::Response as HeaderVersion>::header_version(version)
        };
        let decoded = ResponseHeader::decode(&mut resp, header_version)
            .and_then(|h| Ok((h, <R::Response as Decodable>::decode(&mut resp, version)?)));
        let (h, body) = decoded.map_err(|e| {
            Error::Protocol(format!("{}: bad response to {}: {e}", self.peer, R::KEY))
        })?;
        if h.correlation_id != self.correlation || resp.has_remaining() {
            return Err(Error::Protocol(format!(
                "{}: response to {} does not match the request (correlation {} for {}, {} bytes left)",
                self.peer,
                R::KEY,
                h.correlation_id,
                self.correlation,
                resp.remaining()
            )));
        }
        Ok(body)
    }
}
