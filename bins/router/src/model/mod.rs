//! Qdrant's REST bodies as Rust types, named after the schemas of
//! `../shared/qdrant-api/openapi.json`.
//!
//! A request body is read once, by serde, into these types ([`parse`]); a rejected body
//! answers 400 in Qdrant's error shape naming the JSON path of the bad field
//! (`points[2].vector[7]: ...`). Every object refuses fields it does not know, as Qdrant's
//! does, and treats `null` as absent, as clients send it for unset fields. What this server
//! does not serve is still read here (a sparse vector, a `recommend` query, `shard_key`) so
//! that the conversion to internal requests (`crate::convert`) can answer 501 and name it,
//! rather than the body failing to parse. Ranges and limits are checked in the conversion,
//! where the defaults live.
//!
//! The polymorphic parts (vectors, ids, queries) are in [`vectors`]; responses in
//! [`response`].

pub mod response;
pub mod vectors;

use crate::error::ApiError;
use payload::Payload;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;
pub use vectors::{
    BatchVectorStruct, ContextPair, ExtendedPointId, FilterInput, Fusion, Mmr, NamedVectorStruct,
    QueryInterface, RecommendInput, RecommendStrategy, Sample, VectorInput, VectorStruct,
    WithPayload, WithVector,
};

/// Reads a request body into `T`. An empty body, or `null`, reads as `{}` (clients send none
/// where every field is optional).
pub fn parse<'de, T: Deserialize<'de>>(body: &'de [u8]) -> Result<T, ApiError> {
    let body: &'de [u8] =
        if body.iter().all(u8::is_ascii_whitespace) || body.trim_ascii() == b"null" {
            b"{}"
        } else {
            body
        };
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut de).map_err(format_error)?;
    de.end()
        .map_err(|e| ApiError::bad_request(format!("Format error in JSON body: {e}")))?;
    Ok(value)
}

/// Reads one element of a batch (`searches[i]`) into `T`; errors name the path from the
/// body's top, `prefix` first.
pub fn parse_at<T: DeserializeOwned>(item: &[u8], prefix: &str) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(item);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." || path.is_empty() {
            ApiError::bad_request(format!("Format error in JSON body: {prefix}: {inner}"))
        } else {
            ApiError::bad_request(format!(
                "Format error in JSON body: {prefix}.{path}: {inner}"
            ))
        }
    })
}

/// `Format error in JSON body: <path>: <what>` (the path left out at the top level).
fn format_error(e: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = e.path().to_string();
    let inner = e.into_inner();
    if path == "." || path.is_empty() {
        ApiError::bad_request(format!("Format error in JSON body: {inner}"))
    } else {
        ApiError::bad_request(format!("Format error in JSON body: {path}: {inner}"))
    }
}

/// A shard key selector: read so that it can be refused by name (custom sharding is not
/// served).
pub type ShardKeySelector = Value;

/// `PointStruct`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PointStruct {
    /// The id.
    pub id: ExtendedPointId,
    /// Its vectors.
    pub vector: VectorStruct,
    /// Its payload.
    pub payload: Option<Payload>,
}

/// `Batch`: columns of ids, vectors and payloads.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Batch {
    /// Ids.
    pub ids: Vec<ExtendedPointId>,
    /// One vector (or one per name) per id.
    pub vectors: BatchVectorStruct,
    /// One payload per id.
    pub payloads: Option<Vec<Option<Payload>>>,
}

/// `PointInsertOperations` as sent: `PointsList` (`points`) or `PointsBatch` (`batch`).
/// Read as one object so an error inside a point keeps its path; the conversion checks that
/// exactly one of the two is there.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PointInsertOperations {
    /// `PointsList`.
    pub points: Option<Vec<PointStruct>>,
    /// `PointsBatch`.
    pub batch: Option<Batch>,
    /// Custom sharding (not served).
    pub shard_key: Option<ShardKeySelector>,
    /// What an existing point must pass to be replaced.
    pub update_filter: Option<FilterInput>,
    /// Which points may be written (default `upsert`).
    pub update_mode: Option<UpdateMode>,
}

/// `UpdateMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateMode {
    /// Insert new points, replace existing ones.
    Upsert,
    /// Only insert new points.
    InsertOnly,
    /// Only replace existing points.
    UpdateOnly,
}

/// `PointVectors`: a point's new vectors.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PointVectors {
    /// The point.
    pub id: ExtendedPointId,
    /// Its new vectors (the unnamed one, or some named ones).
    pub vector: VectorStruct,
}

/// `UpdateVectors`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateVectors {
    /// The points.
    pub points: Vec<PointVectors>,
    /// What a point must pass to be updated.
    pub update_filter: Option<FilterInput>,
    /// Custom sharding (not served).
    pub shard_key: Option<ShardKeySelector>,
}

/// `DeleteVectors`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteVectors {
    /// By id.
    pub points: Option<Vec<ExtendedPointId>>,
    /// By filter.
    pub filter: Option<FilterInput>,
    /// The vector names to remove.
    pub vector: Vec<String>,
    /// Custom sharding (not served).
    pub shard_key: Option<ShardKeySelector>,
}

/// `PointsSelector`: `{points: [...]}` or `{filter: ...}` (delete, clear payload).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PointsSelector {
    /// By id.
    pub points: Option<Vec<ExtendedPointId>>,
    /// By filter.
    pub filter: Option<FilterInput>,
    /// Custom sharding (not served).
    pub shard_key: Option<ShardKeySelector>,
}

/// `SetPayload` (and the body of overwrite payload).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetPayload {
    /// Keys to set (absent: none).
    pub payload: Option<Payload>,
    /// By id.
    pub points: Option<Vec<ExtendedPointId>>,
    /// By filter.
    pub filter: Option<FilterInput>,
    /// Nested path to set under.
    pub key: Option<String>,
    /// Custom sharding (not served).
    pub shard_key: Option<ShardKeySelector>,
}

/// `DeletePayload`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeletePayload {
    /// Key paths to delete.
    pub keys: Vec<String>,
    /// By id.
    pub points: Option<Vec<ExtendedPointId>>,
    /// By filter.
    pub filter: Option<FilterInput>,
    /// Custom sharding (not served).
    pub shard_key: Option<ShardKeySelector>,
}

/// `UpdateOperations` (`POST /points/batch`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateOperations {
    /// Applied in order, all or none.
    pub operations: Vec<UpdateOperation>,
}

/// `UpdateOperation`: an object with one key, naming the operation.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum UpdateOperation {
    /// `{"upsert": PointInsertOperations}`.
    Upsert(PointInsertOperations),
    /// `{"delete": PointsSelector}`.
    Delete(PointsSelector),
    /// `{"set_payload": SetPayload}`.
    SetPayload(SetPayload),
    /// `{"overwrite_payload": SetPayload}`.
    OverwritePayload(SetPayload),
    /// `{"delete_payload": DeletePayload}`.
    DeletePayload(DeletePayload),
    /// `{"clear_payload": PointsSelector}`.
    ClearPayload(PointsSelector),
    /// `{"update_vectors": UpdateVectors}`.
    UpdateVectors(UpdateVectors),
    /// `{"delete_vectors": DeleteVectors}`.
    DeleteVectors(DeleteVectors),
}

/// `PointRequest` (retrieve by ids).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PointRequest {
    /// Ids.
    pub ids: Vec<ExtendedPointId>,
    /// Payload to return (default: all).
    pub with_payload: Option<WithPayload>,
    /// Vectors to return (default: none).
    pub with_vector: Option<WithVector>,
    /// Custom sharding (not served).
    pub shard_key: Option<ShardKeySelector>,
}

/// `ScrollRequest`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScrollRequest {
    /// The first id of the page.
    pub offset: Option<ExtendedPointId>,
    /// Page size (10).
    pub limit: Option<u64>,
    /// Filter.
    pub filter: Option<FilterInput>,
    /// Payload to return (default: all).
    pub with_payload: Option<WithPayload>,
    /// Vectors to return (default: none).
    pub with_vector: Option<WithVector>,
    /// Ordering by a payload field.
    pub order_by: Option<OrderByInput>,
    /// Custom sharding (not served).
    pub shard_key: Option<ShardKeySelector>,
}

/// `OrderByInterface`: a key, or `OrderBy`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum OrderByInput {
    /// Ascending by this key.
    Key(String),
    /// The full form.
    Full(OrderBy),
}

/// `OrderBy`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderBy {
    /// The payload key (with a range index in Qdrant; any numeric or datetime key here).
    pub key: String,
    /// `asc` (default) or `desc`.
    pub direction: Option<Direction>,
    /// The first value (inclusive): a number or a datetime.
    pub start_from: Option<Value>,
}

/// `Direction`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Smallest first.
    Asc,
    /// Largest first.
    Desc,
}

/// `CountRequest`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountRequest {
    /// Filter.
    pub filter: Option<FilterInput>,
    /// Exact count (always exact here).
    #[allow(dead_code)] // type-checked, then every count is exact
    pub exact: Option<bool>,
    /// Custom sharding (not served).
    pub shard_key: Option<ShardKeySelector>,
}

/// `QuantizationSearchParams`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuantizationSearchParams {
    /// Walk full vectors only.
    pub ignore: Option<bool>,
    /// Rescore candidates with full vectors.
    pub rescore: Option<bool>,
    /// Candidates rescored, as a multiple of the limit.
    pub oversampling: Option<f64>,
}

/// `SearchParams`, plus `nprobe` for collections indexed with IVF (our extension).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchParams {
    /// Candidate list size of the graph walk.
    pub hnsw_ef: Option<u64>,
    /// Exact scan.
    pub exact: Option<bool>,
    /// Quantization settings.
    pub quantization: Option<QuantizationSearchParams>,
    /// Search only indexed segments (accepted; every segment is searched).
    #[allow(dead_code)] // type-checked, not used
    pub indexed_only: Option<bool>,
    /// ACORN filtered walk (accepted; the filtered walk here is always filter-aware).
    #[allow(dead_code)] // accepted, not used
    pub acorn: Option<Value>,
    /// Inverted lists probed (IVF collections).
    pub nprobe: Option<u64>,
}

/// `Prefetch`: a sub-query whose answer the query above it fuses or re-scores.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prefetch {
    /// Its own sub-queries.
    pub prefetch: Option<Prefetches>,
    /// What it searches for (absent: points in id order, or its sub-queries' points).
    pub query: Option<QueryInterface>,
    /// Which named vector.
    pub using: Option<String>,
    /// Filter, added to the filters above it.
    pub filter: Option<FilterInput>,
    /// Search parameters.
    pub params: Option<SearchParams>,
    /// Lowest score kept.
    pub score_threshold: Option<f64>,
    /// Points kept (10).
    pub limit: Option<u64>,
    /// Where examples given by id are looked up.
    pub lookup_from: Option<LookupLocation>,
}

/// `prefetch`: one sub-query or a list of them (`null`: none).
#[derive(Debug, Clone, Default)]
pub struct Prefetches(pub Vec<Prefetch>);

impl<'de> Deserialize<'de> for Prefetches {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{MapAccess, SeqAccess, Visitor};
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Prefetches;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a prefetch object or a list of them")
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Prefetches, E> {
                Ok(Prefetches::default())
            }
            fn visit_none<E: serde::de::Error>(self) -> Result<Prefetches, E> {
                Ok(Prefetches::default())
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Prefetches, A::Error> {
                let mut all = Vec::new();
                while let Some(p) = seq.next_element::<Prefetch>()? {
                    all.push(p);
                }
                Ok(Prefetches(all))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Prefetches, A::Error> {
                Prefetch::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(|p| Prefetches(vec![p]))
            }
        }
        d.deserialize_any(V)
    }
}

/// `QueryRequest`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryRequest {
    /// What to search for; absent: points in id order.
    pub query: Option<QueryInterface>,
    /// Which named vector.
    pub using: Option<String>,
    /// Filter.
    pub filter: Option<FilterInput>,
    /// Search parameters.
    pub params: Option<SearchParams>,
    /// Lowest score (or highest distance) returned.
    pub score_threshold: Option<f64>,
    /// Results (10).
    pub limit: Option<u64>,
    /// Results skipped.
    pub offset: Option<u64>,
    /// Payload to return (default: none).
    pub with_payload: Option<WithPayload>,
    /// Vectors to return (default: none).
    pub with_vector: Option<WithVector>,
    /// Sub-queries, run first: the query fuses or re-scores their answers.
    pub prefetch: Option<Prefetches>,
    /// Where examples given by id are looked up (default: this collection).
    pub lookup_from: Option<LookupLocation>,
    /// Custom sharding (not served).
    pub shard_key: Option<ShardKeySelector>,
}

/// `QueryRequestBatch` and `SearchRequestBatch`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestBatch<T> {
    /// The requests.
    pub searches: Vec<T>,
}

/// `SearchRequest` (the legacy search).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    /// The query vector.
    pub vector: NamedVectorStruct,
    /// Filter.
    pub filter: Option<FilterInput>,
    /// Search parameters.
    pub params: Option<SearchParams>,
    /// Results (required).
    pub limit: u64,
    /// Results skipped.
    pub offset: Option<u64>,
    /// Payload to return (default: none).
    pub with_payload: Option<WithPayload>,
    /// Vectors to return (default: none).
    pub with_vector: Option<WithVector>,
    /// Lowest score (or highest distance) returned.
    pub score_threshold: Option<f64>,
    /// Custom sharding (not served).
    pub shard_key: Option<ShardKeySelector>,
}

/// `LookupLocation`: the collection (and vector) examples given by id are read from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupLocation {
    /// The collection.
    pub collection: String,
    /// Its vector (default: the one searched).
    pub vector: Option<String>,
    /// Custom sharding (not served).
    pub shard_key: Option<ShardKeySelector>,
}

/// `RecommendRequest` (the legacy recommendation).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecommendRequest {
    /// Examples to be near.
    pub positive: Option<Vec<VectorInput>>,
    /// Examples to be far from.
    pub negative: Option<Vec<VectorInput>>,
    /// How they combine (default `average_vector`).
    pub strategy: Option<vectors::RecommendStrategy>,
    /// Filter.
    pub filter: Option<FilterInput>,
    /// Search parameters.
    pub params: Option<SearchParams>,
    /// Results (required).
    pub limit: u64,
    /// Results skipped.
    pub offset: Option<u64>,
    /// Payload to return (default: none).
    pub with_payload: Option<WithPayload>,
    /// Vectors to return (default: none).
    pub with_vector: Option<WithVector>,
    /// Lowest score returned.
    pub score_threshold: Option<f64>,
    /// Which named vector.
    pub using: Option<String>,
    /// Where examples given by id are looked up.
    pub lookup_from: Option<LookupLocation>,
    /// Custom sharding (not served).
    pub shard_key: Option<ShardKeySelector>,
}

/// `DiscoverRequest` (the legacy discovery).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoverRequest {
    /// What to be near (absent: a context search).
    pub target: Option<VectorInput>,
    /// The constraints.
    pub context: Option<Vec<vectors::ContextPair>>,
    /// Filter.
    pub filter: Option<FilterInput>,
    /// Search parameters.
    pub params: Option<SearchParams>,
    /// Results (required).
    pub limit: u64,
    /// Results skipped.
    pub offset: Option<u64>,
    /// Payload to return (default: none).
    pub with_payload: Option<WithPayload>,
    /// Vectors to return (default: none).
    pub with_vector: Option<WithVector>,
    /// Which named vector.
    pub using: Option<String>,
    /// Where examples given by id are looked up.
    pub lookup_from: Option<LookupLocation>,
    /// Custom sharding (not served).
    pub shard_key: Option<ShardKeySelector>,
}

/// `SearchMatrixRequest` (`/points/search/matrix/pairs` and `/offsets`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchMatrixRequest {
    /// Only points passing this are sampled.
    pub filter: Option<FilterInput>,
    /// Points sampled (10; at least 2).
    pub sample: Option<u64>,
    /// Neighbours per sampled point (3; at least 1).
    pub limit: Option<u64>,
    /// The vector compared (the unnamed one when absent).
    pub using: Option<String>,
    /// Custom sharding (not served).
    pub shard_key: Option<ShardKeySelector>,
}

/// `FacetRequest`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FacetRequest {
    /// The payload key.
    pub key: String,
    /// Values returned (10).
    pub limit: Option<u64>,
    /// Only points passing this.
    pub filter: Option<FilterInput>,
    /// Exact counts (always exact here).
    #[allow(dead_code)] // type-checked, then every count is exact
    pub exact: Option<bool>,
    /// Custom sharding (not served).
    pub shard_key: Option<ShardKeySelector>,
}

/// `WithLookupInterface`: a collection name, or `WithLookup`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum WithLookupInput {
    /// The collection, with its payload and no vectors.
    Collection(String),
    /// The collection and what to return.
    Full(WithLookup),
}

/// `WithLookup`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WithLookup {
    /// Where each group's id is looked up as a point id.
    pub collection: String,
    /// Payload to return (default: all).
    pub with_payload: Option<WithPayload>,
    /// Vectors to return (default: none).
    pub with_vectors: Option<WithVector>,
}

/// `QueryGroupsRequest`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryGroupsRequest {
    /// What to search for.
    pub query: Option<QueryInterface>,
    /// Which named vector.
    pub using: Option<String>,
    /// Filter.
    pub filter: Option<FilterInput>,
    /// Search parameters.
    pub params: Option<SearchParams>,
    /// Lowest score returned.
    pub score_threshold: Option<f64>,
    /// Payload to return (default: none).
    pub with_payload: Option<WithPayload>,
    /// Vectors to return (default: none).
    pub with_vector: Option<WithVector>,
    /// Where examples given by id are looked up.
    pub lookup_from: Option<LookupLocation>,
    /// The payload key whose values name the groups.
    pub group_by: String,
    /// Hits per group (3).
    pub group_size: Option<u64>,
    /// Groups (10).
    pub limit: Option<u64>,
    /// A point per group from another collection.
    pub with_lookup: Option<WithLookupInput>,
    /// Sub-queries, run first: the grouped query fuses or re-scores their answers.
    pub prefetch: Option<Prefetches>,
    /// Custom sharding (not served).
    pub shard_key: Option<ShardKeySelector>,
}

/// `SearchGroupsRequest` (the legacy grouped search).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchGroupsRequest {
    /// The query vector.
    pub vector: NamedVectorStruct,
    /// Filter.
    pub filter: Option<FilterInput>,
    /// Search parameters.
    pub params: Option<SearchParams>,
    /// Payload to return (default: none).
    pub with_payload: Option<WithPayload>,
    /// Vectors to return (default: none).
    pub with_vector: Option<WithVector>,
    /// Lowest score returned.
    pub score_threshold: Option<f64>,
    /// The payload key whose values name the groups.
    pub group_by: String,
    /// Hits per group.
    pub group_size: u64,
    /// Groups.
    pub limit: u64,
    /// A point per group from another collection.
    pub with_lookup: Option<WithLookupInput>,
    /// Custom sharding (not served).
    pub shard_key: Option<ShardKeySelector>,
}

/// `RecommendGroupsRequest` (the legacy grouped recommendation).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecommendGroupsRequest {
    /// Examples to be near.
    pub positive: Option<Vec<VectorInput>>,
    /// Examples to be far from.
    pub negative: Option<Vec<VectorInput>>,
    /// How they combine (default `average_vector`).
    pub strategy: Option<vectors::RecommendStrategy>,
    /// Filter.
    pub filter: Option<FilterInput>,
    /// Search parameters.
    pub params: Option<SearchParams>,
    /// Payload to return (default: none).
    pub with_payload: Option<WithPayload>,
    /// Vectors to return (default: none).
    pub with_vector: Option<WithVector>,
    /// Lowest score returned.
    pub score_threshold: Option<f64>,
    /// Which named vector.
    pub using: Option<String>,
    /// Where examples given by id are looked up.
    pub lookup_from: Option<LookupLocation>,
    /// The payload key whose values name the groups.
    pub group_by: String,
    /// Hits per group.
    pub group_size: u64,
    /// Groups.
    pub limit: u64,
    /// A point per group from another collection.
    pub with_lookup: Option<WithLookupInput>,
    /// Custom sharding (not served).
    pub shard_key: Option<ShardKeySelector>,
}

/// `ChangeAliasesOperation`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeAliases {
    /// Applied in order, all or none.
    pub actions: Vec<AliasOperation>,
}

/// `AliasOperations`: exactly one of the three.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AliasOperation {
    /// `CreateAliasOperation`.
    pub create_alias: Option<CreateAlias>,
    /// `DeleteAliasOperation`.
    pub delete_alias: Option<DeleteAlias>,
    /// `RenameAliasOperation`.
    pub rename_alias: Option<RenameAlias>,
}

/// `CreateAlias`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateAlias {
    /// The collection.
    pub collection_name: String,
    /// Its new name.
    pub alias_name: String,
}

/// `DeleteAlias`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteAlias {
    /// The alias.
    pub alias_name: String,
}

/// `RenameAlias`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenameAlias {
    /// The alias.
    pub old_alias_name: String,
    /// Its new name.
    pub new_alias_name: String,
}

/// `CreateShardingKey` (`PUT /collections/{name}/shards`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateShardingKey {
    /// The key.
    pub shard_key: Value,
    /// Shards of the key (default: the collection's `shard_number`, else 1).
    pub shards_number: Option<u32>,
    /// Replicas of each shard: 1 only (replica sets are not served yet).
    pub replication_factor: Option<u32>,
    /// Nodes the shards may go on: positions in the cluster's node list, from 0.
    pub placement: Option<Vec<u64>>,
    /// Qdrant's initial replica state: only `Active` (what a new shard here is).
    pub initial_state: Option<String>,
    /// Extension, for a collection placed by region (`shard_region_field`): the key's
    /// region, a `geo_bounding_box`, `geo_radius` or `geo_polygon` condition without its
    /// key. A key without one takes the points outside every region.
    pub region: Option<Value>,
}

/// `ClusterOperations` (`POST /collections/{name}/cluster`): exactly one operation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterOperation {
    /// Begin resharding by one shard.
    pub start_resharding: Option<StartResharding>,
    /// Abort the resharding under way (not served).
    pub abort_resharding: Option<Value>,
    /// Create a shard key.
    pub create_sharding_key: Option<CreateShardingKey>,
    /// Delete a shard key.
    pub drop_sharding_key: Option<DropShardingKey>,
    /// Shard transfers and replicas (not served: one shard a node, no replicas yet).
    pub move_shard: Option<Value>,
    /// Not served.
    pub replicate_shard: Option<Value>,
    /// Not served.
    pub abort_transfer: Option<Value>,
    /// Not served.
    pub drop_replica: Option<Value>,
    /// Not served.
    pub restart_transfer: Option<Value>,
    /// Not served.
    pub replicate_points: Option<Value>,
}

/// `StartResharding`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartResharding {
    /// `up` (one shard more) or `down` (one less).
    pub direction: ReshardingDirection,
    /// The node the shard is added on or removed from (its position in the node list): the
    /// next node growing, the last shard's shrinking; checked when given.
    pub peer_id: Option<u64>,
    /// A shard key's shards (not served: keys keep their shards).
    pub shard_key: Option<Value>,
}

/// `ReshardingDirection`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReshardingDirection {
    /// One shard more.
    Up,
    /// One shard less.
    Down,
}

/// `DropShardingKey` (`POST /collections/{name}/shards/delete`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropShardingKey {
    /// The key.
    pub shard_key: Value,
}

/// `CreateFieldIndex`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateFieldIndex {
    /// The payload key.
    pub field_name: String,
    /// Its schema: a type name or a parameter object (read by `payload`).
    pub field_schema: Option<Value>,
    /// Older clients' name for `field_schema`.
    pub field_type: Option<Value>,
}

/// `UpdateCollection` (`PATCH /collections/{name}`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateCollection {
    /// Optimizer settings over the current ones.
    pub optimizers_config: Option<storage::OptimizersConfigDiff>,
    /// Collection parameters over the current ones.
    pub params: Option<CollectionParamsDiff>,
    /// HNSW settings over the current ones.
    pub hnsw_config: Option<storage::HnswConfigDiff>,
    /// The collection's quantization, or `"Disabled"`.
    pub quantization_config: Option<QuantizationDiff>,
    /// Per-vector changes, by vector name (`""` for the unnamed vector).
    pub vectors: Option<std::collections::BTreeMap<String, VectorParamsDiff>>,
    /// Sparse vectors (not served).
    pub sparse_vectors: Option<Value>,
    /// Strict mode, echoed.
    pub strict_mode_config: Option<Value>,
    /// Free-form metadata, echoed.
    pub metadata: Option<Value>,
}

/// `VectorNameConfig` (`PUT /collections/{name}/vectors/{vector_name}`): a dense vector's
/// shape, or a sparse vector's (not served).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VectorNameConfig {
    /// A dense vector.
    pub dense: Option<DenseVectorConfig>,
    /// A sparse vector.
    pub sparse: Option<SparseVectorConfig>,
}

/// `SparseVectorConfig`: what defines a new sparse vector.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SparseVectorConfig {
    /// `idf` or `none`.
    pub modifier: Option<storage::SparseModifier>,
    /// Element type of the index's weights (accepted and echoed; weights are `f32`).
    pub datatype: Option<String>,
}

/// `DenseVectorConfig`: what defines a new dense vector; its index and quantization are the
/// collection's.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DenseVectorConfig {
    /// Dimension.
    pub size: usize,
    /// Distance function.
    pub distance: storage::Distance,
    /// Late interaction: each point holds a matrix.
    pub multivector_config: Option<storage::MultiVectorConfig>,
    /// Element type (`float32` or `float16`).
    pub datatype: Option<String>,
}

/// `VectorParamsDiff`: what a PATCH may change of one vector.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VectorParamsDiff {
    /// HNSW settings over the vector's own (an empty object removes the vector's own).
    pub hnsw_config: Option<storage::HnswConfigDiff>,
    /// The vector's own quantization, or `"Disabled"` to use the collection's.
    pub quantization_config: Option<QuantizationDiff>,
    /// Full vectors on disk once indexed (segments loaded from now on).
    pub on_disk: Option<bool>,
    /// Qdrant 1.19's memory tier (accepted, not used).
    #[allow(dead_code)] // type-checked, then ignored: one memory tier here
    pub memory: Option<Value>,
}

/// `QuantizationConfigDiff`: a quantization, or `"Disabled"` (none of its own).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum QuantizationDiff {
    /// `"Disabled"`.
    Disabled(DisabledWord),
    /// A quantization.
    Set(storage::QuantizationConfig),
}

/// The word `"Disabled"`.
#[derive(Debug, Deserialize)]
pub enum DisabledWord {
    /// `"Disabled"`.
    Disabled,
}

impl QuantizationDiff {
    /// What the config holds after the change.
    pub fn into_config(self) -> Option<storage::QuantizationConfig> {
        match self {
            QuantizationDiff::Disabled(_) => None,
            QuantizationDiff::Set(q) => Some(q),
        }
    }
}

/// `CollectionParamsDiff`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectionParamsDiff {
    /// Replicas per shard (echoed: one node).
    pub replication_factor: Option<u32>,
    /// Replicas that must acknowledge a write (echoed).
    pub write_consistency_factor: Option<u32>,
    /// Payloads on disk (echoed).
    pub on_disk_payload: Option<bool>,
    /// Extra replicas read (accepted).
    #[allow(dead_code)] // one replica: nothing to fan out to
    pub read_fan_out_factor: Option<u32>,
}

/// `SnapshotRecover`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotRecover {
    /// `file://` path, path, an http(s) URL on an allowed host, or this server's own
    /// download URL.
    pub location: String,
    /// Which side wins (accepted).
    #[allow(dead_code)] // one node: the snapshot's data wins
    pub priority: Option<String>,
    /// The archive's SHA-256, checked before recovering.
    pub checksum: Option<String>,
    /// Sent as `api-key` to a remote location.
    pub api_key: Option<String>,
}

/// Query-string parameters of a snapshot upload.
#[derive(Debug, Default, Deserialize)]
pub struct UploadParams {
    /// Answer once recovered (default) or at once.
    pub wait: Option<Flag>,
    /// Which side wins (one node: the snapshot's data).
    #[allow(dead_code)] // one node: the snapshot's data wins
    pub priority: Option<String>,
    /// The file's SHA-256, checked before recovering.
    pub checksum: Option<String>,
}

/// Query-string parameters (unknown ones are ignored, as Qdrant does) of the write endpoints (`?wait=true&ordering=weak`).
#[derive(Debug, Default, Deserialize)]
pub struct WriteParams {
    /// Answer after the write is applied (`true`) or once it is logged (`false`).
    pub wait: Option<Flag>,
    /// Write ordering guarantee (one node: every ordering is strong).
    #[allow(dead_code)] // type-checked; one node orders every write
    pub ordering: Option<WriteOrdering>,
    /// Seconds the operation may take.
    #[allow(dead_code)] // a write is logged and applied as one step; it is not abandoned
    pub timeout: Option<u64>,
}

/// Query-string parameters of the read endpoints (`?consistency=...&timeout=...`).
#[derive(Debug, Default, Deserialize)]
pub struct ReadParams {
    /// Read consistency (one replica: every level reads the same data).
    #[allow(dead_code)] // one replica: every level reads the same data
    pub consistency: Option<String>,
    /// Seconds the request may take (at least 1, at most the server's request timeout).
    pub timeout: Option<Timeout>,
}

/// A `timeout` of at least one second (Qdrant's minimum).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeout(pub u64);

impl<'de> Deserialize<'de> for Timeout {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<str>::deserialize(d)?;
        match s.parse::<u64>() {
            Ok(n) if n >= 1 => Ok(Timeout(n)),
            _ => Err(serde::de::Error::custom(format!(
                "timeout `{s}` is not a whole number of seconds of at least 1"
            ))),
        }
    }
}

impl ReadParams {
    /// When the shards must have answered: `timeout` seconds from now, at most `limit`.
    pub fn deadline(&self, limit: std::time::Duration) -> std::time::Instant {
        let asked = self
            .timeout
            .map_or(limit, |s| std::time::Duration::from_secs(s.0).min(limit));
        std::time::Instant::now() + asked
    }
}

/// Query-string parameters of collection and snapshot management.
#[derive(Debug, Default, Deserialize)]
pub struct ManageParams {
    /// Wait for the operation (snapshots, index changes).
    pub wait: Option<Flag>,
    /// Seconds the operation may take.
    #[allow(dead_code)] // management operations run to their end
    pub timeout: Option<u64>,
}

/// `WriteOrdering`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WriteOrdering {
    /// Any replica.
    Weak,
    /// Through the shard leader.
    Medium,
    /// Through the consensus.
    Strong,
}

/// A boolean in a query string: `true`, `false`, `1` or `0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flag(pub bool);

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<str>::deserialize(d)?;
        match &*s {
            "true" | "1" => Ok(Flag(true)),
            "false" | "0" => Ok(Flag(false)),
            other => Err(serde::de::Error::custom(format!(
                "`{other}` is not a boolean"
            ))),
        }
    }
}

impl Flag {
    /// The value, or `default` when the parameter was absent.
    pub fn or(flag: Option<Flag>, default: bool) -> bool {
        flag.map_or(default, |f| f.0)
    }
}
