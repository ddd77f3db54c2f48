//! One benchmark step (N calls through one relay for S seconds) and the stepwise search for
//! the most streams a relay core carries under the loss limit.

use std::io;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::load::{Generator, PTIME};
use crate::targets::{cpu_time, Relay};

/// What a step needs besides the relay.
#[derive(Debug, Clone)]
pub struct StepConfig {
    /// Address the endpoints bind and the relay serves.
    pub ip: IpAddr,
    /// Sending time per step.
    pub seconds: f64,
    /// Generator threads.
    pub gen_threads: usize,
    /// CPUs the generator threads are pinned to (empty: unpinned).
    pub gen_cpus: Vec<usize>,
}

/// One step's figures.
#[derive(Debug, Clone)]
pub struct Step {
    /// Relay name.
    pub target: String,
    /// Calls (two streams each).
    pub calls: usize,
    /// Packets sent and received.
    pub sent: u64,
    /// Packets that came back through the relay.
    pub received: u64,
    /// Loss in percent.
    pub loss_pct: f64,
    /// Packets per second offered (both directions).
    pub offered_pps: f64,
    /// Packets per second that came back through the relay during the sending phase.
    pub relayed_pps: f64,
    /// End-to-end added latency (sender → relay → receiver), ns: p50, p99, p99.9, max.
    pub latency_ns: [u64; 4],
    /// The relay's own receive → send latency, when it measures one.
    pub internal_ns: Option<[u64; 3]>,
    /// Relay CPU used during the step as a fraction of one core.
    pub cpu_util: f64,
    /// Relay CPU per relayed packet, µs.
    pub cpu_us_per_packet: f64,
    /// The generator kept its schedule.
    pub kept_pace: bool,
    /// Send slots the generator started late, percent.
    pub gen_late_pct: f64,
    /// Share of the relay's CPU spent in the kernel (system time).
    pub cpu_sys_share: f64,
    /// Packets received more often than sent, and from unknown streams.
    pub duplicates: u64,
    /// Sends the generator could not queue (counted in the loss).
    pub send_failures: u64,
}

impl Step {
    /// Streams (two per call).
    pub fn streams(&self) -> usize {
        self.calls * 2
    }

    /// Whether this step passed: loss under `limit_pct` with the generator on schedule.
    pub fn passed(&self, limit_pct: f64) -> bool {
        self.kept_pace && self.loss_pct < limit_pct && self.received > 0
    }

    /// Streams one fully busy relay core would carry at this step's CPU cost per packet.
    pub fn projected_streams_per_core(&self) -> f64 {
        if self.cpu_us_per_packet <= 0.0 {
            return 0.0;
        }
        let pps_per_stream = 1.0 / PTIME.as_secs_f64();
        1e6 / self.cpu_us_per_packet / pps_per_stream
    }

    /// The step as one JSON object.
    pub fn json(&self) -> Value {
        json!({
            "bench": "relay_step",
            "target": self.target,
            "calls": self.calls,
            "streams": self.streams(),
            "sent": self.sent,
            "received": self.received,
            "loss_pct": self.loss_pct,
            "offered_pps": self.offered_pps.round(),
            "latency_ns": {"p50": self.latency_ns[0], "p99": self.latency_ns[1],
                           "p999": self.latency_ns[2], "max": self.latency_ns[3]},
            "internal_latency_ns": self.internal_ns.map(|l| json!({"p50": l[0], "p99": l[1], "p999": l[2]})),
            "cpu_util": self.cpu_util,
            "cpu_us_per_packet": self.cpu_us_per_packet,
            "cpu_sys_share": self.cpu_sys_share,
            "kept_pace": self.kept_pace,
            "generator_late_pct": self.gen_late_pct,
            "duplicates": self.duplicates,
            "send_failures": self.send_failures,
        })
    }
}

fn fmt_ns(ns: u64) -> String {
    if ns >= 1_000_000 {
        format!("{:.1}ms", ns as f64 / 1e6)
    } else {
        format!("{:.0}µs", ns as f64 / 1e3)
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:<16} {:>6} calls {:>6} streams {:>8.0} pps  loss {:>7.4}%  e2e p50/p99/p99.9 {}/{}/{}",
            self.target,
            self.calls,
            self.streams(),
            self.offered_pps,
            self.loss_pct,
            fmt_ns(self.latency_ns[0]),
            fmt_ns(self.latency_ns[1]),
            fmt_ns(self.latency_ns[2]),
        )?;
        if let Some(l) = self.internal_ns {
            write!(
                f,
                "  relay {}/{}/{}",
                fmt_ns(l[0]),
                fmt_ns(l[1]),
                fmt_ns(l[2])
            )?;
        }
        write!(
            f,
            "  cpu {:>5.1}% {:.2}µs/pkt ({:.0}% sys){}",
            self.cpu_util * 100.0,
            self.cpu_us_per_packet,
            self.cpu_sys_share * 100.0,
            if self.kept_pace {
                String::new()
            } else {
                format!("  GENERATOR BEHIND ({:.1}% slots late)", self.gen_late_pct)
            }
        )
    }
}

/// Runs `calls` calls through `relay` for `cfg.seconds`.
pub fn step(relay: &mut dyn Relay, calls: usize, cfg: &StepConfig) -> io::Result<Step> {
    let generator = Generator::prepare(cfg.ip, calls, cfg.gen_threads, &cfg.gen_cpus)?;
    let packets = (cfg.seconds / PTIME.as_secs_f64()).ceil().max(1.0) as u32;
    let routes = match relay.setup(generator.addrs()) {
        Ok(r) => r,
        Err(e) => {
            let _ = generator.run(None, 0);
            let _ = relay.teardown();
            return Err(e);
        }
    };
    let cpu0 = cpu_time(relay.pid())?;
    let t0 = Instant::now();
    let report = generator.run(Some(&routes), packets);
    let wall = t0.elapsed();
    let cpu1 = cpu_time(relay.pid())?;
    let internal = relay.internal_latency();
    let teardown = relay.teardown();
    let report = report?;
    teardown?;
    let user = cpu1.0.saturating_sub(cpu0.0);
    let sys = cpu1.1.saturating_sub(cpu0.1);
    let cpu = user + sys;
    let h = &report.latency_ns;
    let q = |p: f64| {
        if h.is_empty() {
            0
        } else {
            h.value_at_quantile(p)
        }
    };
    Ok(Step {
        target: relay.name().to_string(),
        calls,
        sent: report.sent,
        received: report.received,
        loss_pct: report.loss_pct(),
        offered_pps: report.offered_pps(),
        relayed_pps: report.received as f64 / report.send_time.as_secs_f64().max(1e-9),
        latency_ns: [q(0.5), q(0.99), q(0.999), h.max()],
        internal_ns: internal,
        cpu_util: cpu.as_secs_f64() / wall.max(Duration::from_millis(1)).as_secs_f64(),
        cpu_us_per_packet: if report.received == 0 {
            0.0
        } else {
            cpu.as_secs_f64() * 1e6 / report.received as f64
        },
        kept_pace: report.kept_pace(),
        gen_late_pct: report.late_slots as f64 * 100.0 / report.slots.max(1) as f64,
        cpu_sys_share: if cpu.is_zero() {
            0.0
        } else {
            sys.as_secs_f64() / cpu.as_secs_f64()
        },
        duplicates: report.duplicates + report.foreign,
        send_failures: report.send_failures,
    })
}

/// How a search ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// A step lost more than the limit: the relay's capacity lies below that step.
    Loss,
    /// The generator could not keep its schedule: the relay carried every step it was given,
    /// its capacity is higher than the best step.
    Generator,
    /// The largest step asked for passed.
    MaxCalls,
    /// Interrupted.
    Stopped,
}

/// A relay's search result.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Every step run.
    pub steps: Vec<Step>,
    /// Index of the largest passing step.
    pub best: Option<usize>,
    /// Why the search stopped.
    pub limit: Limit,
}

impl Outcome {
    /// The largest passing step.
    pub fn best(&self) -> Option<&Step> {
        self.best.map(|i| &self.steps[i])
    }
}

/// Steps `calls` (ascending) through `relay` until one fails; `print` sees every step.
pub fn search(
    relay: &mut dyn Relay,
    calls: &[usize],
    cfg: &StepConfig,
    loss_limit_pct: f64,
    stop: &dyn Fn() -> bool,
    print: &mut dyn FnMut(&Step),
) -> io::Result<Outcome> {
    let mut out = Outcome {
        steps: Vec::new(),
        best: None,
        limit: Limit::MaxCalls,
    };
    for &n in calls {
        if stop() {
            out.limit = Limit::Stopped;
            break;
        }
        let s = step(relay, n, cfg)?;
        print(&s);
        let passed = s.passed(loss_limit_pct);
        let behind = !s.kept_pace;
        out.steps.push(s);
        if passed {
            out.best = Some(out.steps.len() - 1);
        } else {
            out.limit = if behind {
                Limit::Generator
            } else {
                Limit::Loss
            };
            break;
        }
        // Let the relay's sockets and the kernel settle between steps.
        std::thread::sleep(Duration::from_millis(300));
    }
    Ok(out)
}

/// The geometric ladder of call counts `start, start·factor, …` up to `max`.
pub fn ladder(start: usize, factor: f64, max: usize) -> Vec<usize> {
    let mut v = Vec::new();
    let mut x = start.max(1) as f64;
    while (x as usize) <= max {
        let n = x as usize;
        if v.last() != Some(&n) {
            v.push(n);
        }
        x *= factor.max(1.01);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ladder_grows_and_stops() {
        assert_eq!(ladder(100, 2.0, 1000), vec![100, 200, 400, 800]);
        assert_eq!(ladder(1, 1.0, 3), vec![1, 2, 3]);
    }
}
