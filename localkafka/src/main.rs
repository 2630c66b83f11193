//! `make kafka` / `make kafka-cluster`: Apache Kafka on loopback until Ctrl-C or SIGTERM.
//!
//! ```text
//! localkafka [--nodes N] [--port P] [--data DIR]
//! ```
//! Prints the bootstrap address on stdout (one line, for `KAFKA_BROKERS=$(…)`-style use) and what it
//! is doing on stderr. Without `--data` the nodes' data is temporary and removed on exit.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use localkafka::{Cluster, Options};

const USAGE: &str = "usage: localkafka [--nodes N] [--port P] [--data DIR]

Starts Apache Kafka (the release pinned in localkafka/pom.xml) on 127.0.0.1 in KRaft mode, every
node a broker and a controller, and prints the bootstrap address. Stops cleanly on Ctrl-C or SIGTERM.

  --nodes N   number of nodes (default 1; 3 for a cluster that survives one node down)
  --port P    first client port (default: free ports); node i listens on P+i-1, its controller on P+N+i-1
  --data DIR  keep the data in DIR across runs (default: a temporary directory, removed on exit)

KAFKA_LIBS overrides where the jars are cached; JAVA_HOME chooses the JVM (Java 17 or newer).";

fn main() -> ExitCode {
    let mut options = Options::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .ok_or_else(|| format!("{name} needs a value\n\n{USAGE}"))
        };
        let parsed = match arg.as_str() {
            "--nodes" => value("--nodes").and_then(|v| {
                v.parse::<usize>()
                    .ok()
                    .filter(|n| (1..=9).contains(n))
                    .map(|n| options.nodes = n)
                    .ok_or_else(|| format!("--nodes takes 1 to 9, not {v:?}"))
            }),
            "--port" => value("--port").and_then(|v| {
                v.parse::<u16>()
                    .map(|p| options.port = Some(p))
                    .map_err(|_| format!("--port takes a port number, not {v:?}"))
            }),
            "--data" => value("--data").map(|v| options.data_dir = Some(PathBuf::from(v))),
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => Err(format!("unknown argument {other:?}\n\n{USAGE}")),
        };
        if let Err(why) = parsed {
            eprintln!("localkafka: {why}");
            return ExitCode::from(2);
        }
    }

    eprintln!(
        "localkafka: starting Apache Kafka {} ({} node{})…",
        localkafka::version(),
        options.nodes,
        if options.nodes == 1 { "" } else { "s" }
    );
    let started = std::time::Instant::now();
    let mut cluster = match Cluster::start(options) {
        Ok(cluster) => cluster,
        Err(err) => {
            eprintln!("localkafka: {err}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!(
        "localkafka: ready in {:.1} s; data in {}; Ctrl-C stops it",
        started.elapsed().as_secs_f64(),
        cluster.data_dir().display()
    );
    println!("{}", cluster.bootstrap());
    let stopped = wait_for_signal(&mut cluster);
    eprintln!("localkafka: {stopped}; stopping the nodes…");
    cluster.shutdown(Duration::from_secs(60));
    eprintln!("localkafka: stopped");
    ExitCode::SUCCESS
}

/// Blocks until SIGINT or SIGTERM, or until every node has exited; says which.
fn wait_for_signal(cluster: &mut Cluster) -> String {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => return format!("no signal handling ({err})"),
    };
    runtime.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return "could not install signal handlers".to_string();
        };
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = term.recv() => return "SIGTERM".to_string(),
                _ = int.recv() => return "SIGINT".to_string(),
                _ = tick.tick() => {
                    let ids = cluster.ids();
                    let down: Vec<i32> = ids.iter().copied().filter(|&id| !cluster.is_running(id)).collect();
                    if down.len() == ids.len() {
                        return format!("every node exited (see {}/node-*/kafka.log)", cluster.data_dir().display());
                    }
                }
            }
        }
    })
}
