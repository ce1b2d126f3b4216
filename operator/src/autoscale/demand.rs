//! What each partition needs, from its measurements over a window.
//!
//! DS2's idea: a partition's cost is the share of a pod's time it takes
//! per event (busy share over processed rate); what it needs is that cost
//! times the rate it must reach: what comes in (processed plus backlog
//! growth) and its backlog worked off within the catch-up time.

use super::signals::Sample;

/// One partition's demand over a window.
#[derive(Clone, Debug, PartialEq)]
pub struct Demand {
    pub partition: u32,
    /// Pod-seconds per event.
    pub cost: f64,
    /// Events processed per second (mean).
    pub rate: f64,
    /// Events arriving per second: processed plus backlog growth.
    pub incoming: f64,
    /// Records waiting at the end of the window.
    pub backlog: f64,
    /// Events per second it must process: incoming plus the backlog over
    /// the catch-up time.
    pub needed: f64,
    /// Share of one pod it needs (`needed × cost`); above 1, more than a
    /// pod can give it.
    pub load: f64,
    /// Its heaviest key and that key's share, as last seen.
    pub top_key: Option<(String, f64)>,
}

/// Every partition's demand over `samples` (oldest first).
pub fn demand<'a>(
    samples: impl Iterator<Item = &'a Sample> + Clone,
    catch_up_s: f64,
) -> Vec<Demand> {
    let samples: Vec<&Sample> = samples.collect();
    let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
        return Vec::new();
    };
    let span_s = ((last.at_ms - first.at_ms) as f64 / 1000.0).max(0.0);
    let mut out: Vec<Demand> = last
        .partitions
        .iter()
        .map(|p| {
            let seen: Vec<_> = samples
                .iter()
                .filter_map(|s| s.partitions.iter().find(|q| q.partition == p.partition))
                .collect();
            let n = seen.len().max(1) as f64;
            let rate = seen.iter().map(|q| q.rate).sum::<f64>() / n;
            let busy = seen.iter().map(|q| q.busy).sum::<f64>() / n;
            let backlog_then = seen.first().map_or(0.0, |q| q.backlog);
            let growth = if span_s > 0.0 {
                (p.backlog - backlog_then) / span_s
            } else {
                0.0
            };
            let incoming = rate + growth.max(0.0);
            Demand {
                partition: p.partition,
                cost: if rate > 0.0 { busy / rate } else { f64::NAN },
                rate,
                incoming,
                backlog: p.backlog,
                needed: incoming + p.backlog / catch_up_s.max(1.0),
                load: 0.0,
                top_key: p.top_key.clone(),
            }
        })
        .collect();
    // A partition that processed nothing costs what the others cost on
    // average (it may be new, or stalled behind a slow pod).
    let known: Vec<f64> = out
        .iter()
        .map(|d| d.cost)
        .filter(|c| c.is_finite())
        .collect();
    let fallback = if known.is_empty() {
        0.0
    } else {
        known.iter().sum::<f64>() / known.len() as f64
    };
    for d in &mut out {
        if !d.cost.is_finite() {
            d.cost = fallback;
        }
        d.load = d.needed * d.cost;
    }
    out.sort_by_key(|d| d.partition);
    out
}
