//! The GPU path (cargo feature `cuda`): CAGRA built and searched by cuVS on an NVIDIA GPU,
//! with the CPU path's parameters and result types.
//!
//! Vectors are prepared for the metric on the host ([`GpuData`]: normalised for cosine,
//! which cuVS then searches by inner product), the build reads them from host memory (cuVS
//! copies them to the device), and a search copies its queries to the device and its results
//! back. Each result's distance is measured again on the host with `quant`'s kernels, so that
//! distances are the project's own ("smaller is closer", [`quant::metric`]) whatever cuVS
//! reports for the metric. Manhattan has no CAGRA kernel in cuVS and is refused; filters are
//! not passed to the GPU (filtered searches belong to the CPU path).
//!
//! Linking needs `libcuvs_c.so` and `libcudart.so` at build time (see `build.rs`); running
//! needs them, and what they need, on the loader's path.

use crate::config::{CagraConfig, CagraSearchParams};
use cuvs::distance::DistanceType;
use cuvs::dlpack::{
    AsDlTensor, AsDlTensorMut, DLDevice, DLDeviceType, DLPackError, DLTensorView, DLTensorViewMut,
    DType,
};
use cuvs::neighbors::cagra::{Index, IndexParams, SearchParams};
use cuvs::Resources;
use index_core::{check_vector, IndexError, Result, ScoredOffset};
use quant::{kernels, Metric};
use std::ffi::c_void;
use std::marker::PhantomData;
use std::os::raw::c_int;

// The CUDA runtime's allocation and copy calls; linked from build.rs (`cudart`).
type CudaError = c_int;
const CUDA_MEMCPY_HOST_TO_DEVICE: c_int = 1;
const CUDA_MEMCPY_DEVICE_TO_HOST: c_int = 2;

unsafe extern "C" {
    fn cudaMalloc(ptr: *mut *mut c_void, size: usize) -> CudaError;
    fn cudaFree(ptr: *mut c_void) -> CudaError;
    fn cudaMemcpy(dst: *mut c_void, src: *const c_void, count: usize, kind: c_int) -> CudaError;
    fn cudaDeviceSynchronize() -> CudaError;
}

fn gpu_error(what: &str, detail: impl std::fmt::Display) -> IndexError {
    IndexError::Io(std::io::Error::other(format!("GPU {what}: {detail}")))
}

fn check_cuda(what: &str, status: CudaError) -> Result<()> {
    if status == 0 {
        Ok(())
    } else {
        Err(gpu_error(what, format!("CUDA runtime error {status}")))
    }
}

/// Vectors prepared for the metric, in host memory, row-major: what a GPU index is built
/// from and borrows.
pub struct GpuData {
    data: Vec<f32>,
    shape: [i64; 2],
    metric: Metric,
}

impl GpuData {
    /// `data` (`n · dim`, as users send them) checked and prepared for `metric`.
    pub fn new(data: &[f32], dim: usize, metric: Metric) -> Result<GpuData> {
        if metric == Metric::Manhattan {
            return Err(IndexError::InvalidParameter {
                name: "metric",
                reason: "cuVS has no CAGRA kernel for Manhattan distance".into(),
            });
        }
        if dim == 0 || !data.len().is_multiple_of(dim) {
            return Err(IndexError::InvalidParameter {
                name: "data",
                reason: format!(
                    "{} values are not whole vectors of dimension {dim}",
                    data.len()
                ),
            });
        }
        let mut prepared = data.to_vec();
        for v in prepared.chunks_exact_mut(dim) {
            check_vector(v, dim)?;
            metric.prepare(v);
        }
        Ok(GpuData {
            shape: [(prepared.len() / dim) as i64, dim as i64],
            data: prepared,
            metric,
        })
    }

    fn dim(&self) -> usize {
        self.shape[1] as usize
    }
}

impl AsDlTensor for GpuData {
    fn as_dl_tensor(&self) -> std::result::Result<DLTensorView<'_>, DLPackError> {
        // SAFETY: `data` holds `shape[0] · shape[1]` initialised `f32`s in host memory, row
        // major, and lives as long as the borrow of `self` the view is tied to; cuVS reads
        // the view only during the call it is passed to.
        unsafe {
            DLTensorView::from_raw_parts(
                self.data.as_ptr() as *mut c_void,
                DLDevice {
                    device_type: DLDeviceType::kDLCPU,
                    device_id: 0,
                },
                &self.shape,
                None,
                f32::dl_dtype(),
            )
        }
    }
}

/// A row-major matrix in device memory, freed on drop.
struct DeviceMatrix<T: DType> {
    ptr: *mut c_void,
    shape: [i64; 2],
    bytes: usize,
    _type: PhantomData<T>,
}

impl<T: DType + Copy + Default> DeviceMatrix<T> {
    fn alloc(rows: usize, cols: usize) -> Result<Self> {
        let bytes = rows * cols * std::mem::size_of::<T>();
        let mut ptr = std::ptr::null_mut();
        // SAFETY: `cudaMalloc` writes a device pointer to `ptr` (a valid out-pointer) or
        // fails; the pointer is freed once, in `drop`.
        check_cuda("allocation", unsafe { cudaMalloc(&mut ptr, bytes.max(1)) })?;
        Ok(DeviceMatrix {
            ptr,
            shape: [rows as i64, cols as i64],
            bytes,
            _type: PhantomData,
        })
    }

    fn from_host(host: &[T], rows: usize, cols: usize) -> Result<Self> {
        assert_eq!(host.len(), rows * cols);
        let m = Self::alloc(rows, cols)?;
        // SAFETY: `m.ptr` is a device allocation of `m.bytes` bytes, and `host` holds
        // exactly that many bytes; the copy is synchronous.
        check_cuda("copy to the device", unsafe {
            cudaMemcpy(
                m.ptr,
                host.as_ptr().cast(),
                m.bytes,
                CUDA_MEMCPY_HOST_TO_DEVICE,
            )
        })?;
        Ok(m)
    }

    fn to_host(&self) -> Result<Vec<T>> {
        let mut out = vec![T::default(); self.bytes / std::mem::size_of::<T>()];
        // SAFETY: `out` holds `self.bytes` bytes, the size of the device allocation. The
        // caller synchronised the resources' stream (`sync_stream`) after the search that
        // wrote the allocation, so the copy reads finished results.
        check_cuda("copy to the host", unsafe {
            cudaMemcpy(
                out.as_mut_ptr().cast(),
                self.ptr,
                self.bytes,
                CUDA_MEMCPY_DEVICE_TO_HOST,
            )
        })?;
        Ok(out)
    }

    fn view(&self) -> std::result::Result<DLTensorView<'_>, DLPackError> {
        // SAFETY: `ptr` is a live device allocation of `shape[0] · shape[1]` elements of `T`
        // (initialised by `from_host` or written by cuVS before it is read), valid while
        // `self` is borrowed.
        unsafe {
            DLTensorView::from_raw_parts(
                self.ptr,
                DLDevice {
                    device_type: DLDeviceType::kDLCUDA,
                    device_id: 0,
                },
                &self.shape,
                None,
                T::dl_dtype(),
            )
        }
    }
}

impl<T: DType> Drop for DeviceMatrix<T> {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from `cudaMalloc` and is freed only here.
        unsafe { cudaFree(self.ptr) };
    }
}

impl<T: DType + Copy + Default> AsDlTensor for DeviceMatrix<T> {
    fn as_dl_tensor(&self) -> std::result::Result<DLTensorView<'_>, DLPackError> {
        self.view()
    }
}

impl<T: DType + Copy + Default> AsDlTensorMut for DeviceMatrix<T> {
    fn as_dl_tensor_mut(&mut self) -> std::result::Result<DLTensorViewMut<'_>, DLPackError> {
        // SAFETY: as in `view`; the mutable borrow of `self` makes the view the only access
        // to the allocation while cuVS writes it.
        unsafe {
            DLTensorViewMut::from_raw_parts(
                self.ptr,
                DLDevice {
                    device_type: DLDeviceType::kDLCUDA,
                    device_id: 0,
                },
                &self.shape,
                None,
                T::dl_dtype(),
            )
        }
    }
}

/// A CAGRA index built by cuVS on the GPU, over the [`GpuData`] it borrows.
pub struct GpuCagraIndex<'d> {
    // Fields drop in order: the index (its device buffers) before the resources it was
    // built with.
    index: Index<'d>,
    res: Resources,
    data: &'d GpuData,
}

impl<'d> GpuCagraIndex<'d> {
    /// Builds on the GPU with the CPU path's parameters: `intermediate_graph_degree`,
    /// `graph_degree` and NN-descent's `nn_descent_niter` (cuVS's own NN-descent; the
    /// sampling and termination fields are the CPU build's).
    pub fn build(data: &'d GpuData, config: &CagraConfig) -> Result<GpuCagraIndex<'d>> {
        config.validate()?;
        let n = data.shape[0] as usize;
        if n <= config.intermediate_graph_degree {
            return Err(IndexError::InvalidParameter {
                name: "data",
                reason: format!(
                    "{n} vectors are too few for a graph of degree {}",
                    config.intermediate_graph_degree
                ),
            });
        }
        let res = Resources::new().map_err(|e| gpu_error("resources", e))?;
        let metric = match data.metric {
            Metric::Euclidean => DistanceType::L2Expanded,
            // Cosine vectors are unit vectors by now.
            _ => DistanceType::InnerProduct,
        };
        let params = IndexParams::builder()
            .metric(metric)
            .intermediate_graph_degree(config.intermediate_graph_degree)
            .graph_degree(config.graph_degree)
            .nn_descent_with_iterations(config.nn_descent_niter)
            .build()
            .map_err(|e| gpu_error("build parameters", e))?;
        let index = Index::build(&res, &params, data).map_err(|e| gpu_error("build", e))?;
        // SAFETY: a plain CUDA call with no arguments; waits for the build's kernels so that
        // a caller's timing covers them.
        check_cuda("synchronise", unsafe { cudaDeviceSynchronize() })?;
        Ok(GpuCagraIndex { index, res, data })
    }

    /// Searches a batch of `queries` (`q · dim`, as users send them) on the GPU: the
    /// `limit` closest points of each, closest first, with exact host-measured distances.
    pub fn search(
        &self,
        queries: &[f32],
        limit: usize,
        params: &CagraSearchParams,
    ) -> Result<Vec<Vec<ScoredOffset>>> {
        params.validate()?;
        let dim = self.data.dim();
        if !queries.len().is_multiple_of(dim) || queries.is_empty() {
            return Err(IndexError::DimensionMismatch {
                expected: dim,
                found: queries.len() % dim,
            });
        }
        if limit == 0 || limit > 1024 {
            return Err(IndexError::InvalidParameter {
                name: "limit",
                reason: format!("{limit} is not between 1 and 1024 on the GPU"),
            });
        }
        let q = queries.len() / dim;
        let mut prepared = queries.to_vec();
        for v in prepared.chunks_exact_mut(dim) {
            check_vector(v, dim)?;
            self.data.metric.prepare(v);
        }
        let search_params = SearchParams::builder()
            .itopk_size(params.itopk_size.max(limit))
            .search_width(params.search_width)
            .max_iterations(params.max_iterations)
            .min_iterations(params.min_iterations)
            .num_random_samplings(params.num_random_samplings as u32)
            .rand_xor_mask(params.rand_xor_mask)
            .build()
            .map_err(|e| gpu_error("search parameters", e))?;
        let d_queries = DeviceMatrix::<f32>::from_host(&prepared, q, dim)?;
        // The copy above ran on the default stream; the search runs on the resources' own.
        // SAFETY: a plain CUDA call with no arguments.
        check_cuda("synchronise", unsafe { cudaDeviceSynchronize() })?;
        let mut d_neighbors = DeviceMatrix::<u32>::alloc(q, limit)?;
        let mut d_distances = DeviceMatrix::<f32>::alloc(q, limit)?;
        self.index
            .search(
                &self.res,
                &search_params,
                &d_queries,
                &mut d_neighbors,
                &mut d_distances,
            )
            .map_err(|e| gpu_error("search", e))?;
        self.res
            .sync_stream()
            .map_err(|e| gpu_error("synchronise", e))?;
        let ids = d_neighbors.to_host()?;
        let n = self.data.shape[0] as usize;
        let kern = kernels();
        let metric = self.data.metric;
        Ok(prepared
            .chunks_exact(dim)
            .zip(ids.chunks_exact(limit))
            .map(|(qv, row)| {
                let mut hits: Vec<ScoredOffset> = row
                    .iter()
                    .filter(|&&id| (id as usize) < n)
                    .map(|&id| {
                        let v = &self.data.data[id as usize * dim..(id as usize + 1) * dim];
                        ScoredOffset::new(id, metric.distance(kern, qv, v))
                    })
                    .collect();
                hits.sort();
                hits.dedup_by_key(|h| h.offset);
                hits
            })
            .collect())
    }
}
