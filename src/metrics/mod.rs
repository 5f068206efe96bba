//! Metrics as data and as text: the catalogue of every metric, the fixed
//! label-value sets, samples and their Prometheus text encoding, and the
//! gzip prepared once per collection. This layer knows nothing of NVML,
//! collectors or HTTP.

pub(crate) mod catalogue;
pub(crate) mod exposition;
pub(crate) mod filter;
pub(crate) mod gzip;
pub(crate) mod labels;
