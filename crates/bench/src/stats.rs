//! What subscribers saw, per measurement phase: an end-to-end latency histogram (from the
//! message's scheduled send time to its arrival), how many messages arrived, and how many came
//! out of order or twice. A fleet process keeps them in a [`Recorder`]; the parent merges the
//! fleets' [`PhaseStats`], which travel as JSON (the histogram as `[value, count]` pairs).

use std::collections::HashMap;
use std::sync::Mutex;

use anyhow::{anyhow, Result};
use hdrhistogram::Histogram;
use serde_json::{json, Value};

use crate::wire::Tick;

/// Highest latency the histograms hold, in microseconds (a minute); higher values are clamped.
const MAX_MICROS: u64 = 60_000_000;

/// One phase's counts and latencies.
#[derive(Debug, Clone)]
pub(crate) struct PhaseStats {
    /// Latencies in microseconds.
    pub(crate) hist: Histogram<u64>,
    /// Messages received, duplicates included.
    pub(crate) received: u64,
    /// Messages with a lower sequence number than one already received on the connection.
    pub(crate) out_of_order: u64,
    /// Messages with the same sequence number as one already received on the connection.
    pub(crate) duplicates: u64,
}

impl Default for PhaseStats {
    fn default() -> Self {
        PhaseStats {
            hist: new_histogram(),
            received: 0,
            out_of_order: 0,
            duplicates: 0,
        }
    }
}

fn new_histogram() -> Histogram<u64> {
    // Three significant digits from 1 us to a minute: a few tens of KiB per histogram.
    match Histogram::new_with_bounds(1, MAX_MICROS, 3) {
        Ok(hist) => hist,
        Err(e) => unreachable!("constant histogram bounds refused: {e}"),
    }
}

impl PhaseStats {
    /// Adds another fleet's stats of the same phase.
    pub(crate) fn merge(&mut self, other: &PhaseStats) {
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = self.hist.add(&other.hist);
        self.received += other.received;
        self.out_of_order += other.out_of_order;
        self.duplicates += other.duplicates;
    }

    /// The JSON a fleet process sends.
    pub(crate) fn to_json(&self) -> Value {
        let pairs: Vec<[u64; 2]> = self
            .hist
            .iter_recorded()
            .map(|v| [v.value_iterated_to(), v.count_at_value()])
            .collect();
        json!({
            "received": self.received,
            "out_of_order": self.out_of_order,
            "duplicates": self.duplicates,
            "hist": pairs,
        })
    }

    /// Reads [`to_json`](Self::to_json)'s output.
    pub(crate) fn from_json(value: &Value) -> Result<PhaseStats> {
        let count = |key: &str| {
            value[key]
                .as_u64()
                .ok_or_else(|| anyhow!("fleet report without `{key}`: {value}"))
        };
        let mut stats = PhaseStats {
            received: count("received")?,
            out_of_order: count("out_of_order")?,
            duplicates: count("duplicates")?,
            ..PhaseStats::default()
        };
        let pairs = value["hist"]
            .as_array()
            .ok_or_else(|| anyhow!("fleet report without `hist`"))?;
        for pair in pairs {
            let (Some(v), Some(n)) = (pair[0].as_u64(), pair[1].as_u64()) else {
                return Err(anyhow!("bad histogram entry {pair}"));
            };
            stats.hist.saturating_record_n(v, n);
        }
        Ok(stats)
    }

    /// The latency summary in milliseconds.
    pub(crate) fn latency(&self) -> Latency {
        Latency::of(&self.hist)
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Latency {
    pub(crate) samples: u64,
    pub(crate) p50: f64,
    pub(crate) p99: f64,
    pub(crate) p999: f64,
    pub(crate) max: f64,
    pub(crate) mean: f64,
}

impl Latency {
    /// Summarizes a histogram of microseconds.
    pub(crate) fn of(hist: &Histogram<u64>) -> Latency {
        if hist.is_empty() {
            return Latency::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Latency {
            samples: hist.len(),
            p50: ms(hist.value_at_quantile(0.50)),
            p99: ms(hist.value_at_quantile(0.99)),
            p999: ms(hist.value_at_quantile(0.999)),
            max: ms(hist.max()),
            mean: hist.mean() / 1000.0,
        }
    }

    /// A histogram of microseconds from durations.
    pub(crate) fn histogram() -> Histogram<u64> {
        new_histogram()
    }

    pub(crate) fn to_json(self) -> Value {
        let r = |x: f64| (x * 1000.0).round() / 1000.0;
        json!({
            "samples": self.samples,
            "p50_ms": r(self.p50),
            "p99_ms": r(self.p99),
            "p999_ms": r(self.p999),
            "max_ms": r(self.max),
            "mean_ms": r(self.mean),
        })
    }

    /// `p50 1.2 ms, p99 3.4 ms, p99.9 5.6 ms, max 7.8 ms`.
    pub(crate) fn text(self) -> String {
        format!(
            "p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
            self.p50, self.p99, self.p999, self.max
        )
    }
}

/// Where one connection is in each lane's sequence of its room: (lane, phase, highest
/// sequence number seen). A handful of lanes, so a vector beats a map.
#[derive(Debug, Default, Clone)]
pub(crate) struct Order {
    lanes: Vec<(u32, u32, u64)>,
}

/// The stats of every phase seen by one fleet process's connections.
#[derive(Debug, Default)]
pub(crate) struct Recorder {
    // A std mutex: held for one record or one report, never across an `.await`. Every
    // connection task of the fleet records through it; with two cores it is rarely contended.
    phases: Mutex<HashMap<u32, PhaseStats>>,
}

impl Recorder {
    /// Records the arrival of `tick` at `now_ns` on the connection whose position is `order`.
    #[cfg(test)]
    pub(crate) fn record(&self, order: &mut Order, tick: Tick, now_ns: u64) {
        self.record_all(order, &[tick], now_ns);
    }

    /// Records the arrival of `ticks`, read at once, at `now_ns` on the connection whose
    /// position is `order`: one lock for all of them.
    pub(crate) fn record_all(&self, order: &mut Order, ticks: &[Tick], now_ns: u64) {
        let mut phases = self.phases.lock().unwrap_or_else(|e| e.into_inner());
        // The ticks of one read nearly always share a phase: one map lookup for each run.
        for run in ticks.chunk_by(|a, b| a.phase == b.phase) {
            let stats = phases.entry(run[0].phase).or_default();
            for &tick in run {
                record_one(stats, order, tick, now_ns);
            }
        }
    }

    /// Messages of `phase` received so far.
    pub(crate) fn received(&self, phase: u32) -> u64 {
        let phases = self.phases.lock().unwrap_or_else(|e| e.into_inner());
        phases.get(&phase).map_or(0, |s| s.received)
    }

    /// Takes the stats of `phase`; later arrivals of that phase start a new entry.
    pub(crate) fn take(&self, phase: u32) -> PhaseStats {
        let mut phases = self.phases.lock().unwrap_or_else(|e| e.into_inner());
        phases.remove(&phase).unwrap_or_default()
    }
}

/// Records one arrival in its phase's `stats`.
fn record_one(stats: &mut PhaseStats, order: &mut Order, tick: Tick, now_ns: u64) {
    let mut late = false;
    let mut duplicate = false;
    match order
        .lanes
        .iter_mut()
        .find(|(lane, _, _)| *lane == tick.lane)
    {
        Some((_, phase, highest)) if *phase == tick.phase => {
            late = tick.seq < *highest;
            duplicate = tick.seq == *highest;
            *highest = (*highest).max(tick.seq);
        }
        Some((_, phase, highest)) => (*phase, *highest) = (tick.phase, tick.seq),
        None => order.lanes.push((tick.lane, tick.phase, tick.seq)),
    }
    let micros = (now_ns.saturating_sub(tick.sent_ns) / 1000).clamp(1, MAX_MICROS);
    stats.received += 1;
    stats.out_of_order += u64::from(late);
    stats.duplicates += u64::from(duplicate);
    stats.hist.saturating_record(micros);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tick(seq: u64, phase: u32) -> Tick {
        Tick {
            seq,
            lane: 0,
            sent_ns: 1_000_000_000,
            phase,
        }
    }

    #[test]
    fn order_is_tracked_per_connection_and_phase() {
        let recorder = Recorder::default();
        let (mut a, mut b) = (Order::default(), Order::default());
        for seq in [0, 1, 3, 2, 3] {
            recorder.record(&mut a, tick(seq, 1), 1_002_000_000);
        }
        // Another connection of the same room starts its own order.
        recorder.record(&mut b, tick(0, 1), 1_001_000_000);
        // Another lane has its own sequence.
        recorder.record(
            &mut a,
            Tick {
                lane: 1,
                ..tick(0, 1)
            },
            1_001_000_000,
        );
        // A new phase starts over.
        recorder.record(&mut a, tick(0, 2), 1_001_000_000);
        let one = recorder.take(1);
        assert_eq!((one.received, one.out_of_order, one.duplicates), (7, 1, 1));
        assert_eq!(one.latency().max, 2.0);
        assert_eq!(recorder.received(2), 1);
        assert_eq!(recorder.take(1).received, 0);
    }

    #[test]
    fn stats_survive_json_and_merge() {
        let recorder = Recorder::default();
        let mut order = Order::default();
        for i in 0..1000u64 {
            recorder.record(&mut order, tick(i, 0), 1_000_000_000 + (i + 1) * 1000);
        }
        let stats = recorder.take(0);
        let back = PhaseStats::from_json(&stats.to_json()).unwrap();
        assert_eq!(back.received, 1000);
        assert_eq!(back.hist.len(), 1000);
        let (l1, l2) = (stats.latency(), back.latency());
        assert_eq!(l1, l2);
        assert!((l1.p50 - 0.5).abs() < 0.01, "{l1:?}");
        let mut merged = PhaseStats::default();
        merged.merge(&stats);
        merged.merge(&back);
        assert_eq!(merged.received, 2000);
        assert_eq!(merged.latency().p99, l1.p99);
    }

    #[test]
    fn a_message_from_the_future_counts_as_one_microsecond() {
        let recorder = Recorder::default();
        recorder.record(&mut Order::default(), tick(0, 0), 0);
        assert_eq!(recorder.take(0).hist.min(), 1);
    }
}
