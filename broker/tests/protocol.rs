//! The wire protocol edge: version negotiation and malformed input. A bad frame closes only
//! its own connection; other clients and stored data are not affected.

mod common;

use common::*;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse, MetadataRequest};
use kafka_protocol::protocol::Decodable;

#[tokio::test]
async fn api_versions_advertises_only_what_is_implemented() -> TestResult {
    let b = TestBroker::start(&[]).await?;
    let r = b.client().await?.api_versions().await?;
    assert_eq!(r.error_code, 0);
    let keys: Vec<i16> = r.api_keys.iter().map(|k| k.api_key).collect();
    for must in [
        ApiKey::Produce,
        ApiKey::Fetch,
        ApiKey::Metadata,
        ApiKey::JoinGroup,
        ApiKey::InitProducerId,
        ApiKey::ConsumerGroupHeartbeat,
        ApiKey::ConsumerGroupDescribe,
    ] {
        assert!(keys.contains(&(must as i16)), "{must:?} missing");
    }
    for absent in [
        ApiKey::AddPartitionsToTxn,
        ApiKey::SaslHandshake,
        ApiKey::ShareGroupHeartbeat,
    ] {
        assert!(
            !keys.contains(&(absent as i16)),
            "{absent:?} advertised but not implemented"
        );
    }
    Ok(())
}

#[tokio::test]
async fn an_unknown_api_versions_version_gets_v0_unsupported_version_with_ranges() -> TestResult {
    let b = TestBroker::start(&[]).await?;
    let mut c = b.client().await?;
    // A v99 ApiVersions request from a future client: header v2 with an empty body.
    let mut frame = vec![0, 18, 0, 99, 0, 0, 0, 7, 0, 4, b't', b'e', b's', b't', 0];
    let mut framed = (frame.len() as i32).to_be_bytes().to_vec();
    framed.append(&mut frame);
    c.send_raw(&framed).await?;
    let mut resp = c
        .read_frame()
        .await?
        .expect("a response, not a closed connection");
    assert_eq!(
        i32::from_be_bytes(resp[0..4].try_into()?),
        7,
        "correlation id"
    );
    let _ = bytes::Buf::get_i32(&mut resp);
    let body = ApiVersionsResponse::decode(&mut resp, 0)?;
    assert_eq!(body.error_code, 35, "UNSUPPORTED_VERSION");
    assert!(body
        .api_keys
        .iter()
        .any(|k| k.api_key == ApiKey::ApiVersions as i16 && k.max_version >= 3));
    Ok(())
}

#[tokio::test]
async fn negative_and_oversized_frames_close_only_that_connection() -> TestResult {
    let b = TestBroker::start(&["socket.request.max.bytes=1048576"]).await?;
    let mut healthy = b.client().await?;
    for bad in [
        (-1i32).to_be_bytes(),
        (i32::MAX).to_be_bytes(),
        (2_000_000i32).to_be_bytes(),
    ] {
        let mut c = b.client().await?;
        c.send_raw(&bad).await?;
        assert!(
            c.read_frame().await?.is_none(),
            "the connection must be closed"
        );
    }
    // A truncated body that cannot be decoded, and an unknown API key.
    let mut c = b.client().await?;
    c.send_raw(&[0, 0, 0, 8, 0, 3, 0, 12, 0, 0, 0, 1]).await?;
    assert!(c.read_frame().await?.is_none());
    let mut c = b.client().await?;
    c.send_raw(&[0, 0, 0, 10, 0x7f, 0x7f, 0, 0, 0, 0, 0, 1, 0xff, 0xff])
        .await?;
    assert!(c.read_frame().await?.is_none());
    // The healthy client carries on.
    let r = healthy.send(MetadataRequest::default(), 12).await?;
    assert_eq!(r.brokers.len(), 1);
    Ok(())
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() -> TestResult {
    let b = TestBroker::start(&[]).await?;
    let mut c = b.client().await?;
    let mut frames = Vec::new();
    for _ in 0..20 {
        frames.extend_from_slice(&c.encode(&ApiVersionsRequest::default(), 3)?);
    }
    c.send_raw(&frames).await?;
    for expected in 1..=20 {
        let resp = c.read_frame().await?.expect("response");
        assert_eq!(i32::from_be_bytes(resp[0..4].try_into()?), expected);
    }
    Ok(())
}

#[tokio::test]
async fn idle_and_stalled_connections_are_closed_after_connections_max_idle_ms() -> TestResult {
    let b = TestBroker::start(&["connections.max.idle.ms=300"]).await?;
    let mut admin = b.client().await?;
    let t = topic("idle");
    create_topic(&mut admin, &t, 1, &[]).await?;

    let mut idle = b.client().await?;
    // Half a request, then nothing (a stalled or slow client).
    let mut stalled = b.client().await?;
    stalled.send_raw(&[0, 0, 0, 40, 0, 3]).await?;
    // A long poll that outlasts the idle time is a request in progress, not idleness.
    let mut polling = b.client().await?;
    let r = polling.send(fetch_req(&t, 0, 0, 800, 1), 12).await?;
    assert_eq!(r.error_code, 0);
    // A client that keeps asking stays connected.
    let mut busy = b.client().await?;
    for _ in 0..8 {
        busy.api_versions().await?;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    for (what, c) in [
        ("an idle connection", &mut idle),
        ("a stalled request", &mut stalled),
    ] {
        let frame = tokio::time::timeout(std::time::Duration::from_secs(5), c.read_frame()).await;
        assert!(matches!(frame, Ok(Ok(None))), "{what} is closed");
    }
    let r = busy.send(MetadataRequest::default(), 12).await?;
    assert_eq!(r.brokers.len(), 1);
    Ok(())
}

/// A client that sends requests and never reads the answers: before, the response write
/// blocked forever and held the connection (and the segment files in its fetch responses).
#[tokio::test]
async fn a_client_that_stops_reading_is_disconnected_after_connections_max_idle_ms() -> TestResult {
    let b = TestBroker::start(&["connections.max.idle.ms=500"]).await?;
    let mut admin = b.client().await?;
    let t = topic("unread");
    create_topic(&mut admin, &t, 1, &[]).await?;
    let value = "v".repeat(400 * 1024);
    for _ in 0..8 {
        let (err, _) = produce(
            &mut admin,
            &t,
            0,
            batch(&[("k", &value)], kafka_protocol::records::Compression::None),
            1,
        )
        .await?;
        assert_eq!(err, 0);
    }
    let sock = tokio::net::TcpSocket::new_v4()?;
    sock.set_recv_buffer_size(4096)?;
    let stream = sock.connect(b.addr).await?;
    let mut c = Client::from_stream(stream)?;
    let mut frames = Vec::new();
    let requests = 20;
    for _ in 0..requests {
        let mut req = fetch_req(&t, 0, 0, 0, 0);
        req.topics[0].partitions[0].partition_max_bytes = 4 << 20;
        frames.extend_from_slice(&c.encode(&req, 12)?);
    }
    c.send_raw(&frames).await?;
    // Read nothing for longer than the idle time, then read what the broker sent.
    tokio::time::sleep(std::time::Duration::from_millis(2000)).await;
    let mut answered = 0;
    let closed = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        loop {
            match c.read_frame().await {
                Ok(Some(_)) => answered += 1,
                Ok(None) | Err(_) => return,
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the broker closed the connection");
    assert!(answered < requests, "{answered} of {requests} answered");
    // Everyone else is served.
    let r = b
        .client()
        .await?
        .send(MetadataRequest::default(), 12)
        .await?;
    assert_eq!(r.brokers.len(), 1);
    Ok(())
}
