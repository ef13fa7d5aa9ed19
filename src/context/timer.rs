//! GPU timestamps around every launch (benchmarks' device time).

use super::Context;
use crate::error::Result;

/// Timestamp queries written in pairs (start, end) around each launch.
pub(super) struct GpuTimer {
    queries: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    used: u32,
}

/// Queries the timer holds: 128 launches between two readings.
const TIMER_QUERIES: u32 = 256;

impl Context {
    /// Starts timing every kernel launch with GPU timestamps. Returns `false` (and times nothing) on
    /// adapters without timestamp queries inside encoders.
    pub fn enable_gpu_timer(&self) -> bool {
        if !self.features.contains(
            wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS,
        ) {
            return false;
        }
        let queries = self.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("xent.timer"),
            ty: wgpu::QueryType::Timestamp,
            count: TIMER_QUERIES,
        });
        let resolve = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("xent.timer.resolve"),
            size: TIMER_QUERIES as u64 * 8,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        *self.timer.lock().unwrap_or_else(|p| p.into_inner()) = Some(GpuTimer {
            queries,
            resolve,
            used: 0,
        });
        true
    }

    /// Writes the next timestamp when the timer is on (the launcher calls it before and after its passes).
    pub(crate) fn timestamp(&self, encoder: &mut wgpu::CommandEncoder) {
        let mut timer = self.timer.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = timer.as_mut()
            && t.used < TIMER_QUERIES
        {
            encoder.write_timestamp(&t.queries, t.used);
            t.used += 1;
        }
    }

    /// GPU milliseconds of the launches since the last call (first start to last end: gaps between
    /// submissions count), and resets the count. `None` when the timer is off, nothing ran, or more launches ran than it holds.
    pub fn take_gpu_time_ms(&self) -> Result<Option<f64>> {
        let (resolve, used) = {
            let mut timer = self.timer.lock().unwrap_or_else(|p| p.into_inner());
            let Some(t) = timer.as_mut() else {
                return Ok(None);
            };
            let used = std::mem::take(&mut t.used);
            if used == 0 || used % 2 == 1 {
                return Ok(None);
            }
            let mut encoder = self.encoder("xent.timer");
            encoder.resolve_query_set(&t.queries, 0..used, &t.resolve, 0);
            self.submit(encoder)?;
            (t.resolve.clone(), used)
        };
        let ticks: Vec<u64> = pollster::block_on(self.read_buffer(&resolve, 0, used as u64 * 8))?;
        let period = self.queue.get_timestamp_period() as f64;
        // The span from the first launch's start to the last one's end, gaps between launches
        // included (as CUDA events around an operation); summing each launch's end − start instead
        // counted twice the time a launch's start timestamp spent waiting on the one before it.
        let first = ticks.iter().step_by(2).copied().min().unwrap_or(0);
        let last = ticks.iter().skip(1).step_by(2).copied().max().unwrap_or(0);
        let ns = last.saturating_sub(first) as f64 * period;
        Ok((used < TIMER_QUERIES).then_some(ns / 1e6))
    }
}
