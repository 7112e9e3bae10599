//! `fjord-broker [server.properties] [--override key=value]...`
//!
//! With no arguments: a single node (broker and controller) for Kafka clients at
//! `localhost:9092`, data in `/tmp/fjord-logs`, metrics at `:9644/metrics`.

use std::process::ExitCode;

use fjord_broker::BrokerConfig;

const USAGE: &str = "usage: fjord-broker [server.properties] [--override key=value]...

Starts a Kafka-compatible broker. With no arguments it serves PLAINTEXT on port 9092
(clients use localhost:9092) and stores data in /tmp/fjord-logs. Settings use Apache Kafka's
names (node.id, listeners, advertised.listeners, log.dirs, num.partitions, log.retention.ms, ...)
from a properties file, environment variables as Apache Kafka's image names them (KAFKA_NODE_ID,
CLUSTER_ID, ...) then FJORD_<KEY> ones (FJORD_LOG_DIRS=/data sets log.dirs), and --override
key=value, in increasing precedence. FJORD_LOG sets the log filter (default info).";

fn parse_args() -> Result<(Option<String>, Vec<String>), String> {
    let mut file = None;
    let mut overrides = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "-h" | "--help" => return Err(String::new()),
            "--override" => overrides.push(args.next().ok_or("--override needs key=value")?),
            s if s.starts_with("--override=") => {
                overrides.push(s["--override=".len()..].to_string())
            }
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            s => {
                if file.is_some() {
                    return Err(format!("unexpected argument {s}"));
                }
                file = Some(s.to_string());
            }
        }
    }
    Ok((file, overrides))
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FJORD_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let (file, overrides) = match parse_args() {
        Ok(a) => a,
        Err(msg) => {
            if !msg.is_empty() {
                eprintln!("fjord-broker: {msg}");
            }
            eprintln!("{USAGE}");
            return if msg.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            };
        }
    };
    let text = match &file {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(t) => Some(t),
            Err(e) => {
                eprintln!("fjord-broker: cannot read {path}: {e}");
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    let config = match BrokerConfig::load(text.as_deref(), std::env::vars(), &overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("fjord-broker: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("fjord-broker: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let listeners = fjord_broker::bind(&config).await?;
        fjord_broker::run(listeners, config, shutdown_signal()).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fjord-broker: {e}");
            ExitCode::FAILURE
        }
    }
}
