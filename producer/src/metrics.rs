//! The producer's Prometheus metrics.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge, Registry};

/// Every metric the producer exports.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// The registry served on `/metrics`.
    pub registry: Registry,
    /// `producer_records_sent_total`: messages acknowledged by the broker.
    pub sent: IntCounter,
    /// `producer_records_failed_total`: send attempts that failed (and were retried, or ended the run).
    pub failed: IntCounter,
    /// `producer_send_seconds`: from send to acknowledgement.
    pub send_latency: Histogram,
    /// `producer_last_sequence`: the last acknowledged `seq`, for auditing.
    pub last_seq: IntGauge,
    /// `producer_last_ack_timestamp_seconds`: when the last acknowledgement arrived (Unix time).
    pub last_ack: IntGauge,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let m = Self {
            sent: IntCounter::new(
                "producer_records_sent_total",
                "Messages acknowledged by the broker.",
            )?,
            failed: IntCounter::new(
                "producer_records_failed_total",
                "Send attempts that failed.",
            )?,
            send_latency: Histogram::with_opts(
                HistogramOpts::new(
                    "producer_send_seconds",
                    "Time from send to acknowledgement.",
                )
                .buckets(vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
                ]),
            )?,
            last_seq: IntGauge::new(
                "producer_last_sequence",
                "The last acknowledged sequence number.",
            )?,
            last_ack: IntGauge::new(
                "producer_last_ack_timestamp_seconds",
                "Unix time of the last acknowledgement.",
            )?,
            registry,
        };
        m.registry.register(Box::new(m.sent.clone()))?;
        m.registry.register(Box::new(m.failed.clone()))?;
        m.registry.register(Box::new(m.send_latency.clone()))?;
        m.registry.register(Box::new(m.last_seq.clone()))?;
        m.registry.register(Box::new(m.last_ack.clone()))?;
        Ok(m)
    }
}
