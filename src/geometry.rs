//! The device's geometry, decided once per context and in one place: how many elements a lane walks
//! before a row gets more lanes, how a row is walked (the WGSL constants LB and UNROLL), whether large
//! matrices are bound in 256 MiB chunks, and how many workgroups keep the device busy (split-K's
//! target). Every "is this a GPU?" question of the launchers is answered here, from the device type
//! and the context's options, never from the host.

use crate::shaders::{RowWalk, WG_SIZE};

/// Elements one lane walks per pass before a row gets more lanes, on a GPU: short walks, many lanes
/// per row, so that a wide row keeps a whole workgroup busy and latency hidden.
const GPU_ELEMS_PER_LANE: usize = 8;
/// The same on a CPU driver (lavapipe, llvmpipe), where lanes are SIMD lanes run batch after batch:
/// long walks, few lanes per row, few barriers. A row of up to 2,048 floats is one lane's job.
const CPU_ELEMS_PER_LANE: usize = 2048;

/// Split-K's target on the GPU geometry: an H100 runs about a thousand 256-invocation workgroups at
/// once.
const GPU_BUSY_WORKGROUPS: usize = 512;
/// Split-K's target on CPU drivers (lavapipe runs one workgroup per host thread at a time): enough
/// for a 16-thread host, a fixed number so that the summation order, and so the bits, do not depend
/// on the machine.
const CPU_BUSY_WORKGROUPS: usize = 16;

/// On a GPU, matrices are bound at most this many bytes per launch when a chunk of that size holds
/// at least [`GPU_CHUNK_MIN_ROWS`] rows: on an H100 through Vulkan (driver 580), bindings past ~400 MiB
/// ran at ~1,550 GB/s where 256 MiB chunks ran at ~2,650 (a copy at 8192×32000; softmax 1,040 → 1,850
/// GB/s; benches/README.md). Rows wider than 32,768 floats keep the adapter's limit: 256 MiB chunks of
/// so few rows left that GPU partly idle (4096×128256 ran slower in them).
const GPU_CHUNK_BYTES: u64 = 256 << 20;
const GPU_CHUNK_MIN_ROWS: u64 = 2048;

/// The geometry of one context.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    /// See [`crate::ContextOptions::elements_per_lane`].
    pub elements_per_lane: usize,
    /// How the row kernels walk a row.
    pub walk: RowWalk,
    /// Bind large matrices in chunks of about 256 MiB (a GPU whose binding limit the caller did not
    /// lower).
    pub gpu_chunks: bool,
    /// Workgroups that keep the device busy: a split-K matmul splits its reduction until it has this
    /// many. (Split-K only runs below this many tiles, so its partial sums stay under 512·4,096
    /// floats and its reduction under 8,192 workgroups.)
    pub busy_workgroups: usize,
}

impl Geometry {
    /// The geometry of a device of `device_type`, with the caller's `elements_per_lane` (tests set 8
    /// to run the GPU geometry on lavapipe) and whether the caller capped the binding size (which
    /// replaces the GPU chunking rule).
    pub fn new(
        device_type: wgpu::DeviceType,
        elements_per_lane: Option<usize>,
        binding_capped: bool,
    ) -> Self {
        let gpu = device_type != wgpu::DeviceType::Cpu;
        let elements_per_lane = elements_per_lane
            .unwrap_or(if gpu {
                GPU_ELEMS_PER_LANE
            } else {
                CPU_ELEMS_PER_LANE
            })
            .max(1);
        let walk = RowWalk::for_policy(elements_per_lane);
        Self {
            elements_per_lane,
            walk,
            gpu_chunks: gpu && !binding_capped,
            busy_workgroups: if walk.is_gpu() {
                GPU_BUSY_WORKGROUPS
            } else {
                CPU_BUSY_WORKGROUPS
            },
        }
    }

    /// Invocations per row (a power of two, at most a workgroup). Small rows share a workgroup.
    pub fn lanes_per_row(&self, cols: usize) -> u32 {
        cols.div_ceil(self.elements_per_lane)
            .next_power_of_two()
            .min(WG_SIZE as usize) as u32
    }

    /// Floats per chunk binding for rows of `cols` floats, given the adapter's `limit` (in floats).
    pub fn chunk_floats(&self, limit: u64, cols: usize) -> u64 {
        if self.gpu_chunks {
            gpu_chunk_floats(limit, cols)
        } else {
            limit
        }
    }
}

/// The GPU chunking rule (see [`GPU_CHUNK_BYTES`]).
fn gpu_chunk_floats(limit: u64, cols: usize) -> u64 {
    let chunk = GPU_CHUNK_BYTES / 4;
    if chunk >= GPU_CHUNK_MIN_ROWS * cols as u64 {
        limit.min(chunk)
    } else {
        limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_chunks_are_256_mib_unless_that_leaves_few_rows() {
        let limit = (2047u64 << 20) / 4;
        // 8192×32000 (1,000 MiB): chunks of 2,097 rows (256 MiB).
        assert_eq!(gpu_chunk_floats(limit, 32_000) / 32_000, 2097);
        // Rows of 32,768 floats still get 256 MiB chunks (2,048 rows).
        assert_eq!(gpu_chunk_floats(limit, 32_768), (256 << 20) / 4);
        // Wider rows (4096×128256): the adapter's limit.
        assert_eq!(gpu_chunk_floats(limit, 128_256), limit);
        // Small matrices are one chunk either way; a smaller adapter limit wins.
        assert_eq!(gpu_chunk_floats(1 << 20, 1000), 1 << 20);
    }

    #[test]
    fn one_decision_per_device_kind() {
        let cpu = Geometry::new(wgpu::DeviceType::Cpu, None, false);
        assert_eq!(
            (cpu.elements_per_lane, cpu.gpu_chunks, cpu.busy_workgroups),
            (2048, false, 16)
        );
        assert!(!cpu.walk.is_gpu());
        let gpu = Geometry::new(wgpu::DeviceType::DiscreteGpu, None, false);
        assert_eq!(
            (gpu.elements_per_lane, gpu.gpu_chunks, gpu.busy_workgroups),
            (8, true, 512)
        );
        // The GPU geometry on a CPU driver (tests), and a caller's binding cap.
        let forced = Geometry::new(wgpu::DeviceType::Cpu, Some(8), false);
        assert!(forced.walk.is_gpu() && forced.busy_workgroups == 512 && !forced.gpu_chunks);
        assert!(!Geometry::new(wgpu::DeviceType::DiscreteGpu, None, true).gpu_chunks);
        assert_eq!(cpu.lanes_per_row(10), 1);
        assert_eq!(gpu.lanes_per_row(10), 2);
        assert_eq!(gpu.lanes_per_row(1 << 20), 256);
    }
}
