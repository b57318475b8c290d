//! The command line, and its checks.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use serde_json::{Map, Value};

use crate::api::CollectionConfig;
use crate::data::{DatasetFiles, Distance, GeneratedSpec, Limits};
use crate::error::{Error, Result};
use crate::params::Sweep;
use crate::query::LoadMode;

/// Measures a Qdrant-compatible server: upload rate and time to ready, then throughput,
/// latency percentiles and recall of `POST /collections/{c}/points/query`, optionally over a
/// sweep of one search parameter. Writes a terminal summary, `report.json` and `report.html`.
///
/// It only talks to the URL it is given, and every phase is bounded by a count and a time.
#[derive(Debug, Clone, Parser)]
#[command(name = "loadtest", version)]
pub struct Args {
    /// The server, `http://host:port` (Qdrant listens on 6333).
    #[arg(long)]
    pub url: String,
    /// Sent as the `api-key` header (Qdrant's authentication).
    #[arg(long, env = "QDRANT_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// The collection to create (or, with --skip-load, to query).
    #[arg(long, default_value = "loadtest")]
    pub collection: String,

    /// A dataset directory with base.{fvecs,npy}, query.{fvecs,npy} and optionally
    /// groundtruth.{ivecs,npy} (as made by ../shared/datasets/prepare.sh).
    #[arg(long, conflicts_with_all = ["base", "generate"])]
    pub dataset: Option<PathBuf>,
    /// Base vectors file (.fvecs or .npy), with --queries.
    #[arg(long, requires = "queries", conflicts_with = "generate")]
    pub base: Option<PathBuf>,
    /// Query vectors file (.fvecs or .npy).
    #[arg(long, requires = "base")]
    pub queries: Option<PathBuf>,
    /// Exact neighbours file (.ivecs or .npy); computed by brute force when absent.
    #[arg(long, requires = "base")]
    pub ground_truth: Option<PathBuf>,
    /// Generate this many clustered base vectors instead of reading files.
    #[arg(long)]
    pub generate: Option<usize>,
    /// Generated: query vectors.
    #[arg(long, default_value_t = 1000)]
    pub generate_queries: usize,
    /// Generated: dimension.
    #[arg(long, default_value_t = 64)]
    pub dim: usize,
    /// Generated: number of Gaussian clusters.
    #[arg(long, default_value_t = 32)]
    pub clusters: usize,
    /// Generated: standard deviation around each cluster centre (centres lie in [-1, 1]^dim).
    #[arg(long, default_value_t = 0.25)]
    pub spread: f32,
    /// Generated: random seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Use only the first N base vectors (the ground truth is then recomputed).
    #[arg(long)]
    pub max_points: Option<usize>,
    /// Use only the first N query vectors.
    #[arg(long)]
    pub max_query_rows: Option<usize>,
    /// Distance of the collection (and of the ground truth computed here).
    #[arg(long, value_enum, default_value_t = Distance::Cosine)]
    pub distance: Distance,

    /// Query an existing collection as it is (no create, no upload). It must hold the
    /// dataset's vectors under ids 0..n, as a previous load by this tool leaves it.
    #[arg(long)]
    pub skip_load: bool,
    /// Delete the collection first if it exists.
    #[arg(long, conflicts_with = "skip_load")]
    pub recreate: bool,
    /// Delete the collection at the end.
    #[arg(long)]
    pub drop_after: bool,
    /// Points per upsert request.
    #[arg(long, default_value_t = 1000)]
    pub batch_size: usize,
    /// Upsert requests in flight at once.
    #[arg(long, default_value_t = 4)]
    pub upload_concurrency: usize,
    /// hnsw_config.m (server default when absent).
    #[arg(long)]
    pub m: Option<usize>,
    /// hnsw_config.ef_construct (server default when absent).
    #[arg(long)]
    pub ef_construct: Option<usize>,
    /// optimizers_config.indexing_threshold (server default when absent).
    #[arg(long)]
    pub indexing_threshold: Option<usize>,
    /// shard_number (server default when absent).
    #[arg(long)]
    pub shard_number: Option<usize>,
    /// A JSON object merged into the create-collection body, e.g.
    /// '{"quantization_config":{"scalar":{"type":"int8"}}}'.
    #[arg(long)]
    pub collection_config: Option<String>,
    /// Give up waiting for the collection to turn green after this many seconds.
    #[arg(long, default_value_t = 1800.0)]
    pub ready_timeout: f64,

    /// Results per query (recall is recall@limit).
    #[arg(long, default_value_t = 10)]
    pub limit: usize,
    /// Closed loop (N clients as fast as they can) or open loop (a fixed arrival rate).
    #[arg(long, value_enum, default_value_t = Mode::Closed)]
    pub mode: Mode,
    /// Closed loop: concurrent clients (one keep-alive connection each).
    #[arg(long, default_value_t = 4)]
    pub clients: usize,
    /// Open loop: requests per second.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Open loop: keep-alive connections (the most requests in flight).
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// The most requests per run (default: each query once).
    #[arg(long)]
    pub max_queries: Option<u64>,
    /// The longest a run may issue requests, in seconds.
    #[arg(long, default_value_t = 60.0)]
    pub duration: f64,
    /// Untimed queries before each run.
    #[arg(long, default_value_t = 100)]
    pub warmup: u64,
    /// params.hnsw_ef sent with every query (unless swept).
    #[arg(long)]
    pub hnsw_ef: Option<u64>,
    /// A JSON object sent as `params` with every query, e.g. '{"exact":true}'.
    #[arg(long)]
    pub params: Option<String>,
    /// Sweep one search parameter: hnsw_ef=16,32,64 | oversampling=1,2,4 | nprobe=8,16 |
    /// params.PATH=V1,V2 (one run per value: the recall versus QPS curve).
    #[arg(long)]
    pub sweep: Option<String>,
    /// Timeout of each request, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    pub timeout_ms: u64,
    /// Tokio worker threads of the load generator (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,

    /// Directory for report.json and report.html.
    #[arg(long, default_value = "loadtest-report")]
    pub out: PathBuf,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
}

/// The two ways of issuing queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// N clients, each sending its next query when the last is answered.
    Closed,
    /// A fixed arrival rate; latency counted from each request's due time.
    Open,
}

/// Where the vectors come from.
#[derive(Debug, Clone)]
pub enum DataSource {
    /// Files on disk.
    Files {
        /// The files.
        files: DatasetFiles,
        /// A name for reports.
        name: String,
    },
    /// Generated vectors.
    Generated(GeneratedSpec),
}

impl Args {
    /// The data source the flags name.
    pub fn data_source(&self) -> Result<DataSource> {
        if let Some(dir) = &self.dataset {
            let name = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| dir.display().to_string());
            return Ok(DataSource::Files {
                files: DatasetFiles::in_directory(dir)?,
                name,
            });
        }
        if let (Some(base), Some(queries)) = (&self.base, &self.queries) {
            return Ok(DataSource::Files {
                files: DatasetFiles {
                    base: base.clone(),
                    queries: queries.clone(),
                    ground_truth: self.ground_truth.clone(),
                },
                name: base.display().to_string(),
            });
        }
        if let Some(points) = self.generate {
            let spec = GeneratedSpec {
                points,
                queries: self.generate_queries,
                dim: self.dim,
                clusters: self.clusters,
                spread: self.spread,
                seed: self.seed,
            };
            spec.validate()?;
            return Ok(DataSource::Generated(spec));
        }
        Err(Error::argument(
            "dataset",
            "give --dataset DIR, --base FILE --queries FILE, or --generate N",
        ))
    }

    /// Row limits for file datasets.
    pub fn limits(&self) -> Limits {
        Limits {
            max_points: self.max_points,
            max_query_rows: self.max_query_rows,
        }
    }

    /// The query mode.
    pub fn load_mode(&self) -> Result<LoadMode> {
        match self.mode {
            Mode::Closed => {
                if self.clients == 0 {
                    return Err(Error::argument("clients", "must be at least 1"));
                }
                Ok(LoadMode::Closed {
                    clients: self.clients,
                })
            }
            Mode::Open => {
                let rate = self
                    .rate
                    .ok_or_else(|| Error::argument("rate", "--mode open needs --rate"))?;
                if !(rate.is_finite() && rate > 0.0) {
                    return Err(Error::argument("rate", "must be a positive number"));
                }
                if self.connections == 0 {
                    return Err(Error::argument("connections", "must be at least 1"));
                }
                Ok(LoadMode::Open {
                    rate,
                    connections: self.connections,
                })
            }
        }
    }

    /// The run duration bound.
    pub fn run_duration(&self) -> Result<Duration> {
        seconds("duration", self.duration)
    }

    /// How long to wait for `green`.
    pub fn ready_timeout(&self) -> Result<Duration> {
        seconds("ready-timeout", self.ready_timeout)
    }

    /// The request timeout.
    pub fn request_timeout(&self) -> Result<Duration> {
        if self.timeout_ms == 0 {
            return Err(Error::argument("timeout-ms", "must be at least 1"));
        }
        Ok(Duration::from_millis(self.timeout_ms))
    }

    /// The `params` object sent with every query, before the sweep sets its value.
    pub fn base_params(&self) -> Result<Map<String, Value>> {
        let mut params = match &self.params {
            Some(text) => json_object("params", text)?,
            None => Map::new(),
        };
        if let Some(ef) = self.hnsw_ef {
            params.insert("hnsw_ef".into(), Value::from(ef));
        }
        Ok(params)
    }

    /// The sweep, if any.
    pub fn sweep(&self) -> Result<Option<Sweep>> {
        self.sweep.as_deref().map(Sweep::parse).transpose()
    }

    /// The create-collection options for vectors of `dim` dimensions.
    pub fn collection_config(&self, dim: usize) -> Result<CollectionConfig> {
        let extra = self
            .collection_config
            .as_deref()
            .map(|text| json_object("collection-config", text))
            .transpose()?;
        Ok(CollectionConfig {
            dim,
            distance: self.distance,
            m: self.m,
            ef_construct: self.ef_construct,
            indexing_threshold: self.indexing_threshold,
            shard_number: self.shard_number,
            extra,
        })
    }

    /// Checks every value that has a range, before anything is read or sent.
    pub fn validate(&self) -> Result<()> {
        crate::http::Endpoint::parse(&self.url)?;
        crate::api::collection_path(&self.collection)?;
        self.load_mode()?;
        self.run_duration()?;
        self.ready_timeout()?;
        self.request_timeout()?;
        self.base_params()?;
        self.sweep()?;
        self.collection_config(1)?;
        let at_least_one = [
            ("limit", self.limit as u64),
            ("batch-size", self.batch_size as u64),
            ("upload-concurrency", self.upload_concurrency as u64),
            ("max-queries", self.max_queries.unwrap_or(1)),
            ("max-points", self.max_points.unwrap_or(1) as u64),
            ("max-query-rows", self.max_query_rows.unwrap_or(1) as u64),
            ("threads", self.threads.unwrap_or(1) as u64),
        ];
        for (name, value) in at_least_one {
            if value == 0 {
                return Err(Error::argument(name, "must be at least 1"));
            }
        }
        Ok(())
    }
}

fn seconds(name: &str, value: f64) -> Result<Duration> {
    if !(value.is_finite() && value > 0.0 && value < 1e9) {
        return Err(Error::argument(
            name,
            "must be a positive number of seconds",
        ));
    }
    Ok(Duration::from_secs_f64(value))
}

fn json_object(name: &str, text: &str) -> Result<Map<String, Value>> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(Error::argument(name, "must be a JSON object")),
        Err(e) => Err(Error::argument(name, format!("not JSON: {e}"))),
    }
}
