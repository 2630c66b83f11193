//! The consumer's Prometheus metrics. Lag and offsets use kafka_exporter's names and labels, so the
//! Grafana dashboards people already have for Kafka work unchanged.

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// Every metric the consumer exports.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// The registry served on `/metrics`.
    pub registry: Registry,
    /// `kafka_consumergroup_lag{consumergroup,topic,partition}`: high watermark minus committed offset.
    pub lag: IntGaugeVec,
    /// `kafka_consumergroup_current_offset{consumergroup,topic,partition}`: the committed offset.
    pub committed: IntGaugeVec,
    /// `kafka_topic_partition_current_offset{topic,partition}`: the high watermark at the last fetch.
    pub high_watermark: IntGaugeVec,
    /// `consumer_records_consumed_total{topic,partition}`.
    pub consumed: IntCounterVec,
    /// `consumer_records_failed_total{topic,partition}`: not UTF-8 or not JSON, skipped.
    pub failed: IntCounterVec,
    /// `consumer_partition_assigned{topic,partition}`: 1 for each partition this member owns.
    pub assigned: IntGaugeVec,
    /// `consumer_assigned_partitions`.
    pub assigned_count: IntGauge,
    /// `consumer_rebalances_total`: assignments received.
    pub rebalances: IntCounter,
    /// `consumer_rebalance_seconds_total`: time without an assignment while the group rebalanced.
    pub rebalance_seconds: prometheus::Counter,
    /// `consumer_group_generation`.
    pub generation: IntGauge,
    /// `consumer_processing_seconds`: time to process one record, simulated work included.
    pub processing: Histogram,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let offsets = ["consumergroup", "topic", "partition"];
        let partition = ["topic", "partition"];
        let m = Self {
            lag: IntGaugeVec::new(
                Opts::new("kafka_consumergroup_lag", "Current approximate lag of a consumer group at topic/partition."),
                &offsets,
            )?,
            committed: IntGaugeVec::new(
                Opts::new("kafka_consumergroup_current_offset", "Current committed offset of a consumer group at topic/partition."),
                &offsets,
            )?,
            high_watermark: IntGaugeVec::new(
                Opts::new("kafka_topic_partition_current_offset", "Current offset (high watermark) of a partition, at this consumer's last fetch."),
                &partition,
            )?,
            consumed: IntCounterVec::new(
                Opts::new("consumer_records_consumed_total", "Records processed and printed."),
                &partition,
            )?,
            failed: IntCounterVec::new(
                Opts::new("consumer_records_failed_total", "Records skipped because they were not UTF-8 or not JSON."),
                &partition,
            )?,
            assigned: IntGaugeVec::new(
                Opts::new("consumer_partition_assigned", "1 for each partition this member owns."),
                &partition,
            )?,
            assigned_count: IntGauge::new("consumer_assigned_partitions", "Partitions this member owns.")?,
            rebalances: IntCounter::new("consumer_rebalances_total", "Assignments received (rebalances completed).")?,
            rebalance_seconds: prometheus::Counter::new(
                "consumer_rebalance_seconds_total",
                "Seconds spent without an assignment while the group rebalanced.",
            )?,
            generation: IntGauge::new("consumer_group_generation", "The group generation this member belongs to.")?,
            processing: Histogram::with_opts(
                HistogramOpts::new("consumer_processing_seconds", "Time to process one record, simulated work included.")
                    .buckets(vec![0.000_01, 0.000_1, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0]),
            )?,
            registry,
        };
        for c in m.collectors() {
            m.registry.register(c)?;
        }
        Ok(m)
    }

    fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        vec![
            Box::new(self.lag.clone()),
            Box::new(self.committed.clone()),
            Box::new(self.high_watermark.clone()),
            Box::new(self.consumed.clone()),
            Box::new(self.failed.clone()),
            Box::new(self.assigned.clone()),
            Box::new(self.assigned_count.clone()),
            Box::new(self.rebalances.clone()),
            Box::new(self.rebalance_seconds.clone()),
            Box::new(self.generation.clone()),
            Box::new(self.processing.clone()),
        ]
    }
}
