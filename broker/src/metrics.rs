//! Prometheus metrics, served as text on `fjord.metrics.listener` at `/metrics`.
//!
//! Request counters and latency histograms are updated on the request path; per-partition log
//! sizes, partition counts and consumer group lag are computed when scraped, from the same state
//! the broker serves, so they can never drift from it. Names follow what Kafka operators know
//! from the JMX exporter and kafka_exporter (`kafka_consumergroup_lag`, ...).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use tokio::net::TcpListener;

use crate::broker::Broker;

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub request_errors: IntCounterVec,
    pub request_latency: HistogramVec,
    pub bytes_in: IntCounter,
    pub bytes_out: IntCounter,
    pub messages_in: IntCounter,
    log_size: IntGaugeVec,
    log_end_offset: IntGaugeVec,
    partitions: IntGaugeVec,
    lag: IntGaugeVec,
    /// Replica-manager and controller gauges, by the JMX exporter's names.
    under_replicated: IntGauge,
    under_min_isr: IntGauge,
    leaders: IntGauge,
    replicas_hosted: IntGauge,
    offline: IntGauge,
    active_controller: IntGauge,
    fenced_brokers: IntGauge,
    active_brokers: IntGauge,
    /// ISR changes this broker's leaders had accepted (Kafka's IsrShrinksPerSec / IsrExpandsPerSec).
    pub isr_shrinks: IntCounter,
    pub isr_expands: IntCounter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        // The metric definitions are static and valid; registration can only fail on a
        // duplicate name, which would be a programming error caught by the unit test.
        let requests = IntCounterVec::new(
            Opts::new("kafka_network_requests_total", "Requests handled, by API"),
            &["api"],
        )
        .expect("valid metric");
        let request_errors = IntCounterVec::new(
            Opts::new(
                "kafka_network_request_errors_total",
                "Requests that could not be decoded or handled, by API",
            ),
            &["api"],
        )
        .expect("valid metric");
        let request_latency = HistogramVec::new(
            HistogramOpts::new(
                "kafka_network_request_duration_seconds",
                "Time from decoding a request to having its response, by API",
            )
            .buckets(vec![
                0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
                30.0,
            ]),
            &["api"],
        )
        .expect("valid metric");
        let bytes_in = IntCounter::new(
            "kafka_server_bytes_in_total",
            "Record bytes accepted by Produce",
        )
        .expect("valid metric");
        let bytes_out = IntCounter::new(
            "kafka_server_bytes_out_total",
            "Record bytes returned by Fetch",
        )
        .expect("valid metric");
        let messages_in = IntCounter::new(
            "kafka_server_messages_in_total",
            "Records accepted by Produce",
        )
        .expect("valid metric");
        let log_size = IntGaugeVec::new(
            Opts::new("kafka_log_size_bytes", "Bytes on disk per partition"),
            &["topic", "partition"],
        )
        .expect("valid metric");
        let log_end_offset = IntGaugeVec::new(
            Opts::new("kafka_log_end_offset", "Log end offset per partition"),
            &["topic", "partition"],
        )
        .expect("valid metric");
        let partitions = IntGaugeVec::new(
            Opts::new("kafka_topic_partitions", "Partitions per topic"),
            &["topic"],
        )
        .expect("valid metric");
        let lag = IntGaugeVec::new(
            Opts::new(
                "kafka_consumergroup_lag",
                "Log end offset minus committed offset",
            ),
            &["consumergroup", "topic", "partition"],
        )
        .expect("valid metric");
        let gauge = |name: &str, help: &str| IntGauge::new(name, help).expect("valid metric");
        let under_replicated = gauge(
            "kafka_server_replicamanager_underreplicatedpartitions",
            "Partitions led here whose ISR is smaller than their replica set",
        );
        let under_min_isr = gauge(
            "kafka_server_replicamanager_underminisrpartitioncount",
            "Partitions led here whose ISR is below min.insync.replicas (acks=all refused)",
        );
        let leaders = gauge(
            "kafka_server_replicamanager_leadercount",
            "Partitions led by this broker",
        );
        let replicas_hosted = gauge(
            "kafka_server_replicamanager_partitioncount",
            "Partition replicas hosted by this broker",
        );
        let offline = gauge(
            "kafka_controller_kafkacontroller_offlinepartitionscount",
            "Partitions without a leader in the metadata",
        );
        let active_controller = gauge(
            "kafka_controller_kafkacontroller_activecontrollercount",
            "1 on the active controller (the metadata quorum leader), 0 elsewhere",
        );
        let fenced_brokers = gauge(
            "kafka_controller_kafkacontroller_fencedbrokercount",
            "Registered brokers that are fenced",
        );
        let active_brokers = gauge(
            "kafka_controller_kafkacontroller_activebrokercount",
            "Registered brokers that are not fenced",
        );
        let counter = |name: &str, help: &str| IntCounter::new(name, help).expect("valid metric");
        let isr_shrinks = counter(
            "kafka_server_replicamanager_isrshrinks_total",
            "Followers removed from the ISR of partitions led here",
        );
        let isr_expands = counter(
            "kafka_server_replicamanager_isrexpands_total",
            "Followers added to the ISR of partitions led here",
        );
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(active_controller.clone()),
            Box::new(fenced_brokers.clone()),
            Box::new(active_brokers.clone()),
            Box::new(isr_shrinks.clone()),
            Box::new(isr_expands.clone()),
            Box::new(under_replicated.clone()),
            Box::new(under_min_isr.clone()),
            Box::new(leaders.clone()),
            Box::new(replicas_hosted.clone()),
            Box::new(offline.clone()),
            Box::new(request_errors.clone()),
            Box::new(request_latency.clone()),
            Box::new(bytes_in.clone()),
            Box::new(bytes_out.clone()),
            Box::new(messages_in.clone()),
            Box::new(log_size.clone()),
            Box::new(log_end_offset.clone()),
            Box::new(partitions.clone()),
            Box::new(lag.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        Metrics {
            registry,
            requests,
            request_errors,
            request_latency,
            bytes_in,
            bytes_out,
            messages_in,
            log_size,
            log_end_offset,
            partitions,
            lag,
            under_replicated,
            under_min_isr,
            leaders,
            replicas_hosted,
            offline,
            active_controller,
            fenced_brokers,
            active_brokers,
            isr_shrinks,
            isr_expands,
        }
    }

    /// Renders every metric, refreshing the gauges from the broker's state first.
    pub fn render(&self, broker: &Broker) -> String {
        self.log_size.reset();
        self.log_end_offset.reset();
        self.partitions.reset();
        self.lag.reset();
        let image = broker.metadata.image();
        let mut offline = 0;
        for t in image.topics.values() {
            self.partitions
                .with_label_values(&[t.name.as_str()])
                .set(t.partitions.len() as i64);
            offline += t.partitions.iter().filter(|p| p.leader < 0).count() as i64;
        }
        self.offline.set(offline);
        self.active_controller
            .set(broker.metadata.is_controller() as i64);
        let fenced = image.brokers.values().filter(|b| b.fenced).count() as i64;
        self.fenced_brokers.set(fenced);
        self.active_brokers.set(image.brokers.len() as i64 - fenced);
        let (mut under_replicated, mut under_min_isr, mut leaders) = (0, 0, 0);
        let hosted = broker.replicas.all();
        self.replicas_hosted.set(hosted.len() as i64);
        for p in hosted {
            let (size, end) = {
                let st = p.state.lock();
                under_replicated += st.partition.is_under_replicated() as i64;
                under_min_isr += st.partition.is_under_min_isr() as i64;
                leaders += st.partition.is_leader() as i64;
                (st.log.size_bytes(), st.log.next_offset())
            };
            let part = p.tp.partition.to_string();
            self.log_size
                .with_label_values(&[p.tp.topic.as_str(), part.as_str()])
                .set(size as i64);
            self.log_end_offset
                .with_label_values(&[p.tp.topic.as_str(), part.as_str()])
                .set(end);
        }
        self.under_replicated.set(under_replicated);
        self.under_min_isr.set(under_min_isr);
        self.leaders.set(leaders);
        for group in broker.groups.group_ids() {
            for (tp, o) in broker.groups.fetch_offsets(&group) {
                if let Some(p) = broker.replicas.get(&tp.topic, tp.partition) {
                    let lag = (p.high_watermark() - o.offset).max(0);
                    let part = tp.partition.to_string();
                    self.lag
                        .with_label_values(&[group.as_str(), tp.topic.as_str(), part.as_str()])
                        .set(lag);
                }
            }
        }
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// Serves `/metrics` until the listener is dropped with the task.
pub async fn serve(listener: TcpListener, broker: Arc<Broker>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "metrics accept failed");
                continue;
            }
        };
        let broker = broker.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                let broker = broker.clone();
                async move {
                    let resp = if req.uri().path() == "/metrics" {
                        Response::builder()
                            .header("content-type", "text/plain; version=0.0.4")
                            .body(Full::new(Bytes::from(broker.metrics.render(&broker))))
                    } else {
                        Response::builder()
                            .status(404)
                            .body(Full::new(Bytes::from_static(b"see /metrics\n")))
                    };
                    Ok::<_, Infallible>(resp.unwrap_or_default())
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

pub async fn bind(addr: &str) -> std::io::Result<TcpListener> {
    let addr = if addr.starts_with(':') {
        format!("0.0.0.0{addr}")
    } else {
        addr.to_string()
    };
    let sock: SocketAddr = addr
        .parse()
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, addr.clone()))?;
    TcpListener::bind(sock).await
}
