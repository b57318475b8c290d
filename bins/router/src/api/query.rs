//! Searches: the universal query (nearest, recommend, discover, context), the legacy
//! search, recommend and discover, and their batches.
//!
//! A search is planned (typed body to `storage::SearchRequest`, the query vector checked
//! against the collection), then run through the result cache and the shard fan-out. The
//! answer is serialised once, as the JSON array of scored points, and cached as those
//! bytes; the cache key is the request's own bytes (two spellings of one request miss each
//! other, never share a wrong answer).

use super::{collection, ok_raw, ApiResult, Params};
use crate::convert::{self, bad};
use crate::error::ApiError;
use crate::model::response::ScoredPoint;
use crate::model::{
    self, QueryInterface, QueryRequest, ReadParams, RequestBatch, SearchRequest, VectorInput,
};
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;
use index_core::PointId;
use serde_json::value::RawValue;
use shard_router::remote::keys::KeySelection;
use std::sync::Arc;
use std::time::{Duration, Instant};
use storage::Collection;

/// One planned search: the request for the shards, plus what the response needs.
pub(super) struct PlannedSearch {
    pub(super) request: storage::SearchRequest,
    pub(super) offset: usize,
    pub(super) metric: quant::Metric,
    /// Points given by id as examples (or as the query), left out of their own results.
    pub(super) exclude: Vec<PointId>,
    /// Whether the answer depends on another collection (examples looked up there): such
    /// an answer is not cached, since writes there do not invalidate this collection's.
    cacheable: bool,
    /// The shard keys searched (all shards without).
    pub(super) keys: Option<KeySelection>,
}

/// What a query asks for.
enum Plan {
    /// Nearest neighbours, or best scores against examples.
    Search(Box<PlannedSearch>),
    /// No `query`: points in id order, each scored 1, as Qdrant does.
    Scroll(Box<QueryRequest>),
    /// An `order_by` query: points in the order of a payload value, each scored 1.
    Ordered(Box<(storage::OrderBy, QueryRequest)>),
}

/// What a search ranks by, its examples not yet read into vectors.
pub(super) enum Asked {
    Nearest(VectorInput),
    Recommend {
        positive: Vec<VectorInput>,
        negative: Vec<VectorInput>,
        strategy: model::RecommendStrategy,
    },
    Discover {
        target: VectorInput,
        context: Vec<model::ContextPair>,
    },
    Context(Vec<model::ContextPair>),
}

impl Asked {
    pub(super) fn recommend(input: model::RecommendInput) -> Asked {
        Asked::Recommend {
            positive: input.positive.unwrap_or_default(),
            negative: input.negative.unwrap_or_default(),
            strategy: input
                .strategy
                .unwrap_or(model::RecommendStrategy::AverageVector),
        }
    }
}

/// The fields a search shares between the query and the legacy endpoints.
pub(super) struct SearchParts {
    pub(super) using: String,
    pub(super) asked: Asked,
    pub(super) lookup_from: Option<model::LookupLocation>,
    pub(super) limit: usize,
    pub(super) offset: usize,
    pub(super) filter: Option<model::FilterInput>,
    pub(super) params: Option<model::SearchParams>,
    pub(super) score_threshold: Option<f64>,
    pub(super) with_payload: Option<model::WithPayload>,
    pub(super) with_vector: Option<model::WithVector>,
    /// The shard keys searched, and examples given by id looked up in (all without).
    pub(super) keys: Option<KeySelection>,
}

/// What a universal query's `query` asks for.
pub(super) fn asked_of(query: QueryInterface) -> Result<Asked, ApiError> {
    Ok(match query {
        // `hybrid` answers these (a query and a grouped query route them there first).
        QueryInterface::Nearest { mmr: Some(_), .. } => {
            return Err(ApiError::not_implemented(
                "`mmr` is not supported in this request",
            ))
        }
        QueryInterface::Fusion(_)
        | QueryInterface::Rrf(_)
        | QueryInterface::Sample(_)
        | QueryInterface::Formula { .. } => {
            return Err(ApiError::not_implemented(
                "fusion, formulas and sampling are not supported in this request",
            ))
        }
        QueryInterface::Nearest { nearest, .. } => Asked::Nearest(nearest),
        QueryInterface::Recommend(input) => Asked::recommend(input),
        QueryInterface::Discover(input) => Asked::Discover {
            target: input.target,
            context: input.context.0,
        },
        QueryInterface::Context(input) => Asked::Context(input.0),
        QueryInterface::OrderBy(_) => {
            return Err(ApiError::not_implemented(
                "an `order_by` query is served on its own, not grouped",
            ))
        }
        QueryInterface::Other(kind) => {
            return Err(ApiError::not_implemented(format!(
                "query `{kind}` is not supported (nearest, recommend, discover and context are)"
            )))
        }
    })
}

fn plan_query(state: &AppState, c: &Arc<Collection>, req: QueryRequest) -> Result<Plan, ApiError> {
    let keys = convert::shard_keys(&req.shard_key)?;
    let limit = convert::limit(req.limit, "limit", 10)?;
    let offset = convert::offset(req.offset, "query")?;
    let mut req = req;
    let Some(query) = req.query.take() else {
        return Ok(Plan::Scroll(Box::new(req)));
    };
    let query = match query {
        QueryInterface::OrderBy(order) => {
            let order = super::points::order_by(order)?;
            return Ok(Plan::Ordered(Box::new((order, req))));
        }
        other => other,
    };
    let asked = asked_of(query)?;
    plan_search(
        state,
        c,
        SearchParts {
            using: req.using.unwrap_or_default(),
            asked,
            lookup_from: req.lookup_from,
            limit,
            offset,
            filter: req.filter,
            params: req.params,
            score_threshold: req.score_threshold,
            with_payload: req.with_payload,
            with_vector: req.with_vector,
            keys,
        },
    )
    .map(|p| Plan::Search(Box::new(p)))
}

fn plan_legacy(
    state: &AppState,
    c: &Arc<Collection>,
    req: SearchRequest,
) -> Result<PlannedSearch, ApiError> {
    let keys = convert::shard_keys(&req.shard_key)?;
    let limit = convert::limit(Some(req.limit), "limit", 10)?;
    let offset = convert::offset(req.offset, "search")?;
    plan_search(
        state,
        c,
        SearchParts {
            using: req.vector.name,
            asked: Asked::Nearest(req.vector.vector),
            lookup_from: None,
            limit,
            offset,
            filter: req.filter,
            params: req.params,
            score_threshold: req.score_threshold,
            with_payload: req.with_payload,
            with_vector: req.with_vector,
            keys,
        },
    )
}

fn plan_recommend(
    state: &AppState,
    c: &Arc<Collection>,
    req: model::RecommendRequest,
) -> Result<PlannedSearch, ApiError> {
    let keys = convert::shard_keys(&req.shard_key)?;
    let limit = convert::limit(Some(req.limit), "limit", 10)?;
    let offset = convert::offset(req.offset, "recommend")?;
    plan_search(
        state,
        c,
        SearchParts {
            using: req.using.unwrap_or_default(),
            asked: Asked::recommend(model::RecommendInput {
                positive: req.positive,
                negative: req.negative,
                strategy: req.strategy,
            }),
            lookup_from: req.lookup_from,
            limit,
            offset,
            filter: req.filter,
            params: req.params,
            score_threshold: req.score_threshold,
            with_payload: req.with_payload,
            with_vector: req.with_vector,
            keys,
        },
    )
}

fn plan_discover(
    state: &AppState,
    c: &Arc<Collection>,
    req: model::DiscoverRequest,
) -> Result<PlannedSearch, ApiError> {
    let keys = convert::shard_keys(&req.shard_key)?;
    let limit = convert::limit(Some(req.limit), "limit", 10)?;
    let offset = convert::offset(req.offset, "discover")?;
    let context = req.context.unwrap_or_default();
    let asked = match req.target {
        Some(target) => Asked::Discover { target, context },
        None => Asked::Context(context),
    };
    plan_search(
        state,
        c,
        SearchParts {
            using: req.using.unwrap_or_default(),
            asked,
            lookup_from: req.lookup_from,
            limit,
            offset,
            filter: req.filter,
            params: req.params,
            score_threshold: None,
            with_payload: req.with_payload,
            with_vector: req.with_vector,
            keys,
        },
    )
}

/// Where the points a query names by id are read from: the lookup collection's own shards,
/// or in cluster mode the node holding the point.
struct ExampleSource {
    lookup: Arc<Collection>,
    /// In cluster mode: the lookup collection's shards, and the deadline of the fetches.
    remote: Option<(crate::RequestShards, Instant)>,
}

impl ExampleSource {
    /// `keys`: the shard keys of the request, when the examples come from its collection.
    fn new(
        state: &AppState,
        lookup: Arc<Collection>,
        keys: Option<&KeySelection>,
    ) -> Result<ExampleSource, ApiError> {
        // Planning is synchronous: the reactor thread steps aside while the shards (and the
        // collection's gate) are taken, as it does for the fetches.
        let remote = match state.cluster() {
            Some(_) => Some((
                tokio::task::block_in_place(|| {
                    tokio::runtime::Handle::current()
                        .block_on(state.shards_for(&lookup, keys, None))
                })?,
                Instant::now() + state.timeout,
            )),
            None => None,
        };
        Ok(ExampleSource { lookup, remote })
    }

    /// The point's vector `name` as a record, fetched from its node. Planning is
    /// synchronous: the reactor thread steps aside (`block_in_place`) while it waits, which a
    /// query's few examples can afford.
    fn remote_record(&self, id: PointId, name: &str) -> Result<Option<storage::Record>, ApiError> {
        let Some((shards, deadline)) = &self.remote else {
            return Ok(None);
        };
        let req = Arc::new(shard_router::RetrieveRequest {
            with_payload: payload::PayloadSelector::Nothing,
            with_vector: storage::VectorSelector::Only(vec![name.to_string()]),
        });
        let found = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(shard_router::retrieve(
                shards,
                &[id],
                req,
                *deadline,
            ))
        })?;
        Ok(found.into_iter().next())
    }

    fn dense(&self, id: PointId, name: &str) -> Result<Option<Vec<f32>>, ApiError> {
        // The catalog checks the name (an unknown vector is refused as locally); in cluster
        // mode it holds no point, and the node is asked.
        let local = self.lookup.vector_of(id, name)?;
        if self.remote.is_none() {
            return Ok(local);
        }
        let r = self.remote_record(id, name)?;
        Ok(r.and_then(|r| {
            r.vectors?
                .into_iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v)
        }))
    }

    fn sparse(&self, id: PointId, name: &str) -> Result<Option<storage::SparseVector>, ApiError> {
        // The catalog checks the name (an unknown vector is refused as locally); in cluster
        // mode it holds no point, and the node is asked.
        let local = self.lookup.sparse_vector_of(id, name)?;
        if self.remote.is_none() {
            return Ok(local);
        }
        let r = self.remote_record(id, name)?;
        Ok(r.and_then(|r| {
            r.sparse
                .into_iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v)
        }))
    }

    fn multi(&self, id: PointId, name: &str) -> Result<Option<storage::MultiVector>, ApiError> {
        // The catalog checks the name (an unknown vector is refused as locally); in cluster
        // mode it holds no point, and the node is asked.
        let local = self.lookup.multi_vector_of(id, name)?;
        if self.remote.is_none() {
            return Ok(local);
        }
        let r = self.remote_record(id, name)?;
        Ok(r.and_then(|r| r.multi.into_iter().find(|(n, _)| n == name).map(|(_, v)| v)))
    }
}

/// Reads the examples of a query into vectors: given ones as they are, ids from the lookup
/// collection (this one unless `lookup_from` names another), noting the ids of this
/// collection's points so that they are left out of the results, as Qdrant does.
struct ExampleReader {
    lookup: ExampleSource,
    vector: String,
    size: usize,
    same_collection: bool,
    mentioned: Vec<PointId>,
}

impl ExampleReader {
    fn read(&mut self, input: VectorInput) -> Result<Vec<f32>, ApiError> {
        let v = match input {
            VectorInput::Dense(v) => v,
            VectorInput::Id(id) => {
                // One stored vector per example: cheap enough to stay on the reactor.
                let v = self
                    .lookup
                    .dense(id, &self.vector)?
                    .ok_or_else(|| ApiError::not_found(format!("No point with id {id} found")))?;
                if self.same_collection && !self.mentioned.contains(&id) {
                    self.mentioned.push(id);
                }
                v
            }
            VectorInput::Multi(_) => {
                return Err(bad(format!(
                    "Wrong input: `{}` is a dense vector: a multivector cannot query it",
                    self.vector
                )))
            }
            VectorInput::Sparse(_) => {
                return Err(bad(format!(
                    "Wrong input: `{}` is a dense vector: a sparse vector cannot query it",
                    self.vector
                )))
            }
            VectorInput::Inference(kind) => {
                return Err(ApiError::not_implemented(format!(
                    "{kind} inference is not supported; send a vector"
                )))
            }
        };
        if v.len() != self.size {
            return Err(bad(format!(
                "Wrong input: Vector dimension error: expected dim: {}, got {}",
                self.size,
                v.len()
            )));
        }
        Ok(v)
    }

    fn read_all(&mut self, inputs: Vec<VectorInput>) -> Result<Vec<Vec<f32>>, ApiError> {
        inputs.into_iter().map(|i| self.read(i)).collect()
    }

    fn read_pairs(
        &mut self,
        pairs: Vec<model::ContextPair>,
    ) -> Result<Vec<storage::ContextPair>, ApiError> {
        pairs
            .into_iter()
            .map(|p| {
                Ok(storage::ContextPair {
                    positive: self.read(p.positive)?,
                    negative: self.read(p.negative)?,
                })
            })
            .collect()
    }
}

/// The most examples one query may carry, over all its lists and pairs: each costs a walk
/// and a similarity per candidate, under the shard's read lock.
pub const MAX_EXAMPLES: usize = 256;

/// The most rows the matrices of one multivector query may hold together (the query's, or
/// its examples'): ColBERT queries have 32, and `average_vector` stacks its examples' rows.
pub const MAX_MULTI_QUERY_ROWS: usize = 4_096;

fn example_count(asked: &Asked) -> usize {
    match asked {
        Asked::Nearest(_) => 1,
        Asked::Recommend {
            positive, negative, ..
        } => positive.len() + negative.len(),
        Asked::Discover { context, .. } => 1 + 2 * context.len(),
        Asked::Context(context) => 2 * context.len(),
    }
}

/// `avg(positive) + (avg(positive) - avg(negative))`, or `avg(positive)` without negatives:
/// the `average_vector` strategy's query.
fn average_vector(positive: &[Vec<f32>], negative: &[Vec<f32>]) -> Vec<f32> {
    let mean = |vs: &[Vec<f32>]| {
        let mut m = vec![0f32; vs[0].len()];
        for v in vs {
            for (a, x) in m.iter_mut().zip(v) {
                *a += x;
            }
        }
        m.iter_mut().for_each(|a| *a /= vs.len() as f32);
        m
    };
    let pos = mean(positive);
    if negative.is_empty() {
        return pos;
    }
    let neg = mean(negative);
    pos.iter().zip(&neg).map(|(p, n)| p + p - n).collect()
}

pub(super) fn plan_search(
    state: &AppState,
    c: &Arc<Collection>,
    parts: SearchParts,
) -> Result<PlannedSearch, ApiError> {
    if c.with_config(|cfg| cfg.sparse(&parts.using).is_some()) {
        return plan_sparse(state, c, parts);
    }
    if c.with_config(|cfg| cfg.multivector(&parts.using).is_some()) {
        return plan_multi(state, c, parts);
    }
    let SearchParts {
        using,
        asked,
        lookup_from,
        limit,
        offset,
        ..
    } = parts;
    let (size, distance) = c
        .with_config(|cfg| cfg.vectors.get(&using).map(|p| (p.size, p.distance)))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "Wrong input: Not existing vector name error: {using}"
            ))
        })?;
    let metric = distance.metric();
    if example_count(&asked) > MAX_EXAMPLES {
        return Err(bad(format!(
            "Validation error in JSON body: at most {MAX_EXAMPLES} examples in one query"
        )));
    }
    let (lookup, vector) = lookup_of(state, c, &using, lookup_from)?;
    // This collection, named directly or through an alias.
    let same_collection = Arc::ptr_eq(&lookup, c);
    let example_keys = parts.keys.as_ref().filter(|_| same_collection);
    let mut reader = ExampleReader {
        lookup: ExampleSource::new(state, lookup, example_keys)?,
        vector,
        size,
        same_collection,
        mentioned: Vec::new(),
    };
    let query = match asked {
        Asked::Nearest(input) => storage::Query::Nearest(reader.read(input)?),
        Asked::Recommend {
            positive,
            negative,
            strategy,
        } => {
            let positive = reader.read_all(positive)?;
            let negative = reader.read_all(negative)?;
            match strategy {
                model::RecommendStrategy::AverageVector => {
                    if positive.is_empty() {
                        return Err(bad(
                            "Wrong input: the average_vector strategy needs at least one positive example",
                        ));
                    }
                    storage::Query::Nearest(average_vector(&positive, &negative))
                }
                model::RecommendStrategy::BestScore | model::RecommendStrategy::SumScores => {
                    if positive.is_empty() && negative.is_empty() {
                        return Err(bad(
                            "Wrong input: a recommendation needs at least one positive or negative example",
                        ));
                    }
                    let strategy = if strategy == model::RecommendStrategy::BestScore {
                        storage::RecommendStrategy::BestScore
                    } else {
                        storage::RecommendStrategy::SumScores
                    };
                    storage::Query::Examples(storage::ExampleQuery::Recommend {
                        positive,
                        negative,
                        strategy,
                    })
                }
            }
        }
        Asked::Discover { target, context } => {
            let target = reader.read(target)?;
            storage::Query::Examples(storage::ExampleQuery::Discover {
                target,
                context: reader.read_pairs(context)?,
            })
        }
        Asked::Context(context) => {
            if context.is_empty() {
                return Err(bad("Wrong input: a context query needs at least one pair"));
            }
            storage::Query::Examples(storage::ExampleQuery::Context {
                context: reader.read_pairs(context)?,
            })
        }
    };
    let exclude = reader.mentioned;
    let total = (limit + offset + exclude.len()).min(index_core::MAX_LIMIT);
    let mut params = convert::search_params(parts.params, total)?;
    if let Some(t) = parts.score_threshold {
        params.max_distance = Some(match query {
            storage::Query::Nearest(_) => metric.distance_from_score(t as f32),
            // An example query's hits carry their negated score as the distance (a dense
            // search plans no other kind).
            _ => -(t as f32),
        });
    }
    let request = storage::SearchRequest {
        vector_name: using,
        query,
        filter: parts.filter.map(|f| f.0),
        params,
        with_payload: convert::payload_selector(parts.with_payload, false),
        with_vector: convert::vector_selector(parts.with_vector),
        candidates: None,
    };
    Ok(PlannedSearch {
        request,
        offset,
        metric,
        exclude,
        cacheable: same_collection,
        keys: parts.keys,
    })
}

/// What a sparse or multivector search shares with the rest of its request.
struct SparseRest {
    limit: usize,
    offset: usize,
    filter: Option<model::FilterInput>,
    params: Option<model::SearchParams>,
    score_threshold: Option<f64>,
    with_payload: Option<model::WithPayload>,
    with_vector: Option<model::WithVector>,
    keys: Option<KeySelection>,
}

impl SparseRest {
    /// The rest of `parts`, and what they ask.
    fn of(parts: SearchParts) -> (SparseRest, Asked, Option<model::LookupLocation>) {
        let rest = SparseRest {
            limit: parts.limit,
            offset: parts.offset,
            filter: parts.filter,
            params: parts.params,
            score_threshold: parts.score_threshold,
            with_payload: parts.with_payload,
            with_vector: parts.with_vector,
            keys: parts.keys,
        };
        (rest, parts.asked, parts.lookup_from)
    }
}

/// The collection and vector that examples given by id are read from: this collection's
/// `using`, or what `lookup_from` names.
fn lookup_of(
    state: &AppState,
    c: &Arc<Collection>,
    using: &str,
    lookup_from: Option<model::LookupLocation>,
) -> Result<(Arc<Collection>, String), ApiError> {
    match lookup_from {
        None => Ok((c.clone(), using.to_string())),
        Some(l) => {
            convert::refuse_if_set(&l.shard_key, "shard_key", "lookup_from")?;
            let lookup = collection(state, &l.collection)?;
            Ok((lookup, l.vector.unwrap_or_else(|| using.to_string())))
        }
    }
}

/// A query of a sparse vector or a multivector with its vectors read (`V`).
enum ReadQuery<V> {
    /// Nearest to one vector.
    Nearest(V),
    /// `average_vector`: the caller makes one query of the examples.
    Average { positive: Vec<V>, negative: Vec<V> },
    /// Scored against examples.
    Examples(storage::Examples<V>),
}

/// Reads what `asked` names through `read`, with Qdrant's checks on the examples.
fn read_query<V>(
    asked: Asked,
    read: &mut dyn FnMut(VectorInput) -> Result<V, ApiError>,
) -> Result<ReadQuery<V>, ApiError> {
    if example_count(&asked) > MAX_EXAMPLES {
        return Err(bad(format!(
            "Validation error in JSON body: at most {MAX_EXAMPLES} examples in one query"
        )));
    }
    fn pairs<V>(
        read: &mut dyn FnMut(VectorInput) -> Result<V, ApiError>,
        context: Vec<model::ContextPair>,
    ) -> Result<Vec<storage::Pair<V>>, ApiError> {
        context
            .into_iter()
            .map(|p| {
                Ok(storage::Pair {
                    positive: read(p.positive)?,
                    negative: read(p.negative)?,
                })
            })
            .collect()
    }
    Ok(match asked {
        Asked::Nearest(input) => ReadQuery::Nearest(read(input)?),
        Asked::Recommend {
            positive,
            negative,
            strategy,
        } => {
            let positive = positive
                .into_iter()
                .map(&mut *read)
                .collect::<Result<Vec<_>, _>>()?;
            let negative = negative
                .into_iter()
                .map(&mut *read)
                .collect::<Result<Vec<_>, _>>()?;
            let strategy = match strategy {
                model::RecommendStrategy::AverageVector => {
                    if positive.is_empty() {
                        return Err(bad(
                            "Wrong input: the average_vector strategy needs at least one positive example",
                        ));
                    }
                    return Ok(ReadQuery::Average { positive, negative });
                }
                model::RecommendStrategy::BestScore => storage::RecommendStrategy::BestScore,
                model::RecommendStrategy::SumScores => storage::RecommendStrategy::SumScores,
            };
            if positive.is_empty() && negative.is_empty() {
                return Err(bad(
                    "Wrong input: a recommendation needs at least one positive or negative example",
                ));
            }
            ReadQuery::Examples(storage::Examples::Recommend {
                positive,
                negative,
                strategy,
            })
        }
        Asked::Discover { target, context } => {
            let target = read(target)?;
            let context = pairs(read, context)?;
            ReadQuery::Examples(storage::Examples::Discover { target, context })
        }
        Asked::Context(context) => {
            if context.is_empty() {
                return Err(bad("Wrong input: a context query needs at least one pair"));
            }
            ReadQuery::Examples(storage::Examples::Context {
                context: pairs(read, context)?,
            })
        }
    })
}

/// A search of a sparse vector: by a sparse vector, by a point's (left out of the answer), or
/// by examples of either kind; IDF applied to each when the vector has that modifier;
/// `average_vector` becomes one sparse query.
fn plan_sparse(
    state: &AppState,
    c: &Arc<Collection>,
    parts: SearchParts,
) -> Result<PlannedSearch, ApiError> {
    let using = parts.using.clone();
    let (rest, asked, lookup_from) = SparseRest::of(parts);
    let (lookup, vector) = lookup_of(state, c, &using, lookup_from)?;
    let same = Arc::ptr_eq(&lookup, c);
    let lookup = ExampleSource::new(state, lookup, rest.keys.as_ref().filter(|_| same))?;
    let mut mentioned: Vec<PointId> = Vec::new();
    let mut read = |input: VectorInput| -> Result<storage::SparseVector, ApiError> {
        match input {
            VectorInput::Sparse(v) => convert::sparse_vector(v, "query"),
            VectorInput::Id(id) => {
                let v = lookup
                    .sparse(id, &vector)?
                    .ok_or_else(|| ApiError::not_found(format!("No point with id {id} found")))?;
                if same && !mentioned.contains(&id) {
                    mentioned.push(id);
                }
                Ok(v)
            }
            VectorInput::Inference(kind) => Err(ApiError::not_implemented(format!(
                "{kind} inference is not supported; send a vector"
            ))),
            VectorInput::Multi(_) | VectorInput::Dense(_) => Err(bad(format!(
                "Wrong input: `{using}` is a sparse vector: a query or example must be a sparse \
                 vector ({{\"indices\": [..], \"values\": [..]}}) or a point id"
            ))),
        }
    };
    let query = match read_query(asked, &mut read)? {
        ReadQuery::Nearest(q) => storage::Query::Sparse(c.sparse_query(&using, q)?),
        ReadQuery::Average { positive, negative } => {
            let q = storage::sparse::recommend_average(&positive, &negative);
            storage::Query::Sparse(c.sparse_query(&using, q)?)
        }
        ReadQuery::Examples(examples) => {
            storage::Query::SparseExamples(examples.try_map(|v| c.sparse_query(&using, v.clone()))?)
        }
    };
    sparse_plan(using, query, rest, mentioned, same)
}

fn sparse_plan(
    using: String,
    query: storage::Query,
    rest: SparseRest,
    exclude: Vec<PointId>,
    cacheable: bool,
) -> Result<PlannedSearch, ApiError> {
    let total = (rest.limit + rest.offset + exclude.len()).min(index_core::MAX_LIMIT);
    let mut params = convert::search_params(rest.params, total)?;
    // Hits carry their negated score as the distance.
    params.max_distance = rest.score_threshold.map(|t| -(t as f32));
    let request = storage::SearchRequest {
        vector_name: using,
        query,
        filter: rest.filter.map(|f| f.0),
        params,
        with_payload: convert::payload_selector(rest.with_payload, false),
        with_vector: convert::vector_selector(rest.with_vector),
        candidates: None,
    };
    Ok(PlannedSearch {
        request,
        offset: rest.offset,
        metric: quant::Metric::InnerProduct,
        exclude,
        cacheable,
        keys: rest.keys,
    })
}

/// A search of a multivector: by a matrix (or one vector, as a matrix of one row), by the
/// matrix of a point (left out of the answer), or by example matrices; `average_vector`
/// becomes one query of every positive row and every negated negative row, as Qdrant's.
fn plan_multi(
    state: &AppState,
    c: &Arc<Collection>,
    parts: SearchParts,
) -> Result<PlannedSearch, ApiError> {
    let using = parts.using.clone();
    let (rest, asked, lookup_from) = SparseRest::of(parts);
    let (size, metric) = c
        .with_config(|cfg| {
            cfg.multivector(&using)
                .map(|p| (p.size, p.distance.metric()))
        })
        .ok_or_else(|| {
            bad(format!(
                "Wrong input: Not existing vector name error: {using}"
            ))
        })?;
    let (lookup, vector) = lookup_of(state, c, &using, lookup_from)?;
    let same = Arc::ptr_eq(&lookup, c);
    let lookup = ExampleSource::new(state, lookup, rest.keys.as_ref().filter(|_| same))?;
    let mut mentioned: Vec<PointId> = Vec::new();
    let (mut query_rows, mut query_values) = (0usize, 0usize);
    let mut read = |input: VectorInput| -> Result<storage::MultiVector, ApiError> {
        let m = match input {
            VectorInput::Multi(rows) => convert::multi_vector(rows, "query")?,
            VectorInput::Dense(row) => convert::multi_vector(vec![row], "query")?,
            VectorInput::Id(id) => {
                let m = lookup
                    .multi(id, &vector)?
                    .ok_or_else(|| ApiError::not_found(format!("No point with id {id} found")))?;
                if same && !mentioned.contains(&id) {
                    mentioned.push(id);
                }
                m
            }
            VectorInput::Inference(kind) => {
                return Err(ApiError::not_implemented(format!(
                    "{kind} inference is not supported; send a vector"
                )))
            }
            VectorInput::Sparse(_) => {
                return Err(bad(format!(
                    "Wrong input: `{using}` is a multivector: a sparse vector cannot query it"
                )))
            }
        };
        if m.dim() != size {
            return Err(bad(format!(
                "Wrong input: Vector dimension error: expected dim: {size}, got {}",
                m.dim()
            )));
        }
        // Each query row costs a pass over every row of every point scored.
        query_rows += m.row_count();
        query_values += m.as_flat().len();
        if query_rows > MAX_MULTI_QUERY_ROWS
            || query_values > storage::multi::MAX_MULTIVECTOR_VALUES
        {
            return Err(bad(format!(
                "Validation error in JSON body: at most {MAX_MULTI_QUERY_ROWS} rows and {} values \
                 in the matrices of one multivector query, examples included",
                storage::multi::MAX_MULTIVECTOR_VALUES
            )));
        }
        Ok(m)
    };
    let query = match read_query(asked, &mut read)? {
        ReadQuery::Nearest(q) => storage::Query::Multi(q),
        // The examples' rows, bounded above.
        ReadQuery::Average { positive, negative } => storage::Query::Multi(
            storage::MultiVector::recommend_average(&positive, &negative),
        ),
        ReadQuery::Examples(examples) => storage::Query::MultiExamples(examples),
    };
    let nearest = matches!(query, storage::Query::Multi(_));
    let threshold = rest.score_threshold;
    let mut plan = sparse_plan(using, query, rest, mentioned, same)?;
    // A matrix's hits carry the metric's distance for their score (the similarity sum
    // negated: the squared distance sum under Euclid), an example query's its negated score.
    if nearest {
        plan.request.params.max_distance = threshold.map(|t| metric.distance_from_score(t as f32));
    }
    plan.metric = metric;
    Ok(plan)
}

/// Whether the request being served asks its nodes for more than one replica's state
/// (a `consistency` above one replica, in cluster mode).
fn strong_read() -> bool {
    shard_router::remote::is_strong_read(shard_router::remote::read_consistency().as_ref())
}

/// A search answer: the JSON array of scored points, serialised once (and cached as bytes).
pub(crate) type Answer = Arc<Vec<u8>>;

/// Runs a planned search through the cache and the shard fan-out.
async fn run_search(
    state: &Arc<AppState>,
    c: &Arc<Collection>,
    key: Option<Vec<u8>>,
    plan: PlannedSearch,
    deadline: Instant,
) -> Result<Answer, ApiError> {
    let name = c.name();
    let epoch = state.cache.epoch(name);
    // A read asking nodes for more than one replica's state is not answered from the cache:
    // a write through another router, or straight to the nodes, is not in it.
    let key = key.filter(|_| !strong_read());
    if let Some(hit) = key.as_ref().and_then(|k| state.cache.get(name, k)) {
        return Ok(hit);
    }
    let started = Instant::now();
    let shards = state
        .shards_for(c, plan.keys.as_ref(), plan.request.filter.as_deref())
        .await?;
    // `limit + offset` was capped at the most a search returns: what is left after the
    // offset may be nothing.
    let limit = plan
        .request
        .params
        .limit
        .saturating_sub(plan.offset + plan.exclude.len());
    let observe_shard = |shard: u32, took: Duration| {
        state
            .metrics
            .observe_shard_search(name, shard, took.as_secs_f64())
    };
    let hits = shard_router::search_observed(
        &shards,
        Arc::new(plan.request),
        plan.metric,
        deadline,
        &observe_shard,
    )
    .await?;
    state
        .metrics
        .observe_search(name, started.elapsed().as_secs_f64());
    let named = c.with_config(|cfg| cfg.is_named_output());
    let points: Vec<ScoredPoint<'_>> = hits
        .iter()
        .filter(|h| !plan.exclude.contains(&h.record.id))
        .skip(plan.offset)
        .take(limit)
        .map(|h| ScoredPoint::of(named, h))
        .collect();
    let mut out = Vec::with_capacity(64 + points.len() * 96);
    serde_json::to_writer(&mut out, &points).expect("scored points serialise");
    let answer = Arc::new(out);
    // A partial answer is not kept: the next request may find every shard again.
    if let (Some(key), true) = (key, shard_router::partial::missing().is_empty()) {
        let weight = answer.len().min(u32::MAX as usize) as u32;
        state.cache.insert(name, epoch, key, answer.clone(), weight);
    }
    Ok(answer)
}

/// The cache key of a request's bytes, or `None` when the cache is off (no key is built).
fn cached_key(state: &AppState, kind: &str, name: &str, body: &[u8]) -> Option<Vec<u8>> {
    state.cache.is_enabled().then(|| {
        let mut k = cache::KeyBuilder::new();
        k.push_str(kind)
            .push_str(name)
            .push_str(&String::from_utf8_lossy(body));
        k.finish()
    })
}

/// A query without a vector: points in id order, as Qdrant does.
async fn query_without_vector(
    state: &Arc<AppState>,
    c: &Arc<Collection>,
    req: QueryRequest,
    deadline: Instant,
) -> Result<Answer, ApiError> {
    let keys = convert::shard_keys(&req.shard_key)?;
    let limit = convert::limit(req.limit, "limit", 10)?;
    let offset = convert::offset(req.offset, "query")?;
    let scroll = Arc::new(shard_router::ScrollRequest {
        from: None,
        limit: limit + offset,
        filter: req.filter.map(|f| f.0),
        with_payload: convert::payload_selector(req.with_payload, false),
        with_vector: convert::vector_selector(req.with_vector),
    });
    let named = c.with_config(|cfg| cfg.is_named_output());
    let shards = state
        .shards_for(c, keys.as_ref(), scroll.filter.as_deref())
        .await?;
    let page = shard_router::scroll(&shards, scroll, deadline).await?;
    let points: Vec<ScoredPoint<'_>> = page
        .points
        .iter()
        .skip(offset)
        .map(|r| ScoredPoint::scored(named, r, 1.0))
        .collect();
    Ok(Arc::new(
        serde_json::to_vec(&points).expect("scored points serialise"),
    ))
}

/// An `order_by` query: the ordered scroll, `offset` skipped, each point scored 1 with its
/// `order_value`, as Qdrant does.
async fn query_ordered(
    state: &Arc<AppState>,
    c: &Arc<Collection>,
    order: storage::OrderBy,
    req: QueryRequest,
    deadline: Instant,
) -> Result<Answer, ApiError> {
    let keys = convert::shard_keys(&req.shard_key)?;
    let limit = convert::limit(req.limit, "limit", 10)?;
    let offset = convert::offset(req.offset, "query")?;
    let scroll = Arc::new(shard_router::OrderedScrollRequest {
        order,
        limit: (limit + offset).min(index_core::MAX_LIMIT),
        filter: req.filter.map(|f| f.0),
        with_payload: convert::payload_selector(req.with_payload, false),
        with_vector: convert::vector_selector(req.with_vector),
    });
    let named = c.with_config(|cfg| cfg.is_named_output());
    let shards = state
        .shards_for(c, keys.as_ref(), scroll.filter.as_deref())
        .await?;
    let page = shard_router::scroll_ordered(&shards, scroll, deadline).await?;
    let points: Vec<ScoredPoint<'_>> = page
        .iter()
        .skip(offset)
        .map(|(r, v)| ScoredPoint {
            order_value: Some((*v).into()),
            ..ScoredPoint::scored(named, r, 1.0)
        })
        .collect();
    Ok(Arc::new(
        serde_json::to_vec(&points).expect("scored points serialise"),
    ))
}

/// One query, its body given as bytes (the cache key).
async fn one_query(
    state: &Arc<AppState>,
    c: &Arc<Collection>,
    body: &[u8],
    req: QueryRequest,
    deadline: Instant,
) -> Result<Answer, ApiError> {
    if super::hybrid::is_hybrid(&req) {
        return hybrid_query(state, c, body, req, deadline).await;
    }
    match plan_query(state, c, req)? {
        Plan::Scroll(req) => query_without_vector(state, c, *req, deadline).await,
        Plan::Ordered(plan) => {
            let (order, req) = *plan;
            query_ordered(state, c, order, req, deadline).await
        }
        Plan::Search(plan) => run_planned(state, c, "query", body, *plan, deadline).await,
    }
}

/// A query with sub-queries, fusion, diversity or sampling, through the result cache when
/// its answer depends on this collection alone and on nothing drawn at random.
async fn hybrid_query(
    state: &Arc<AppState>,
    c: &Arc<Collection>,
    body: &[u8],
    req: QueryRequest,
    deadline: Instant,
) -> Result<Answer, ApiError> {
    let name = c.name();
    let key = cached_key(state, "query", name, body);
    let epoch = state.cache.epoch(name);
    // A read asking nodes for more than one replica's state is not answered from the cache:
    // a write through another router, or straight to the nodes, is not in it.
    let key = key.filter(|_| !strong_read());
    if let Some(hit) = key.as_ref().and_then(|k| state.cache.get(name, k)) {
        return Ok(hit);
    }
    let started = Instant::now();
    let (answer, cacheable) = super::hybrid::run(state, c, req, deadline).await?;
    state
        .metrics
        .observe_search(name, started.elapsed().as_secs_f64());
    let answer = Arc::new(answer);
    let whole = shard_router::partial::missing().is_empty();
    if let (Some(key), true) = (key, cacheable && whole) {
        let weight = answer.len().min(u32::MAX as usize) as u32;
        state.cache.insert(name, epoch, key, answer.clone(), weight);
    }
    Ok(answer)
}

async fn one_legacy(
    state: &Arc<AppState>,
    c: &Arc<Collection>,
    body: &[u8],
    req: SearchRequest,
    deadline: Instant,
) -> Result<Answer, ApiError> {
    let plan = plan_legacy(state, c, req)?;
    run_planned(state, c, "search", body, plan, deadline).await
}

/// Runs a planned search, through the result cache when its answer depends on this
/// collection alone.
async fn run_planned(
    state: &Arc<AppState>,
    c: &Arc<Collection>,
    kind: &str,
    body: &[u8],
    plan: PlannedSearch,
    deadline: Instant,
) -> Result<Answer, ApiError> {
    let key = if plan.cacheable {
        cached_key(state, kind, c.name(), body)
    } else {
        None
    };
    run_search(state, c, key, plan, deadline).await
}

async fn one_recommend(
    state: &Arc<AppState>,
    c: &Arc<Collection>,
    body: &[u8],
    req: model::RecommendRequest,
    deadline: Instant,
) -> Result<Answer, ApiError> {
    let plan = plan_recommend(state, c, req)?;
    run_planned(state, c, "recommend", body, plan, deadline).await
}

async fn one_discover(
    state: &Arc<AppState>,
    c: &Arc<Collection>,
    body: &[u8],
    req: model::DiscoverRequest,
    deadline: Instant,
) -> Result<Answer, ApiError> {
    let plan = plan_discover(state, c, req)?;
    run_planned(state, c, "discover", body, plan, deadline).await
}

pub async fn recommend(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Params(params): Params<ReadParams>,
    body: Bytes,
) -> ApiResult {
    let start = Instant::now();
    let req: model::RecommendRequest = model::parse(&body)?;
    let c = collection(&state, &name)?;
    let deadline = params.deadline(state.timeout);
    Ok(ok_raw(
        start,
        &[&one_recommend(&state, &c, &body, req, deadline).await?],
    ))
}

pub async fn discover(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Params(params): Params<ReadParams>,
    body: Bytes,
) -> ApiResult {
    let start = Instant::now();
    let req: model::DiscoverRequest = model::parse(&body)?;
    let c = collection(&state, &name)?;
    let deadline = params.deadline(state.timeout);
    Ok(ok_raw(
        start,
        &[&one_discover(&state, &c, &body, req, deadline).await?],
    ))
}

pub async fn query(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Params(params): Params<ReadParams>,
    body: Bytes,
) -> ApiResult {
    let start = Instant::now();
    let req: QueryRequest = model::parse(&body)?;
    let c = collection(&state, &name)?;
    let deadline = params.deadline(state.timeout);
    let points = one_query(&state, &c, &body, req, deadline).await?;
    Ok(ok_raw(start, &[b"{\"points\":", &points, b"}"]))
}

pub async fn search(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Params(params): Params<ReadParams>,
    body: Bytes,
) -> ApiResult {
    let start = Instant::now();
    let req: SearchRequest = model::parse(&body)?;
    let c = collection(&state, &name)?;
    let deadline = params.deadline(state.timeout);
    Ok(ok_raw(
        start,
        &[&one_legacy(&state, &c, &body, req, deadline).await?],
    ))
}

/// The searches of a batch, each kept as its own bytes (its cache key) and read into `T`.
fn batch_items<T: serde::de::DeserializeOwned>(
    body: &[u8],
) -> Result<Vec<(&RawValue, T)>, ApiError> {
    let batch: RequestBatch<&RawValue> = model::parse(body)?;
    convert::check_batch(batch.searches.len())?;
    batch
        .searches
        .into_iter()
        .enumerate()
        .map(|(i, raw)| {
            let req = model::parse_at(raw.get().as_bytes(), &format!("searches[{i}]"))?;
            Ok((raw, req))
        })
        .collect()
}

/// A search request of a batch: the universal query or the legacy search.
trait BatchItem: serde::de::DeserializeOwned + Send + 'static {
    /// Runs it; `body` is its own bytes (the cache key).
    fn run<'a>(
        self,
        state: &'a Arc<AppState>,
        c: &'a Arc<Collection>,
        body: &'a [u8],
        deadline: Instant,
    ) -> futures::future::BoxFuture<'a, Result<Answer, ApiError>>;
}

impl BatchItem for QueryRequest {
    fn run<'a>(
        self,
        state: &'a Arc<AppState>,
        c: &'a Arc<Collection>,
        body: &'a [u8],
        deadline: Instant,
    ) -> futures::future::BoxFuture<'a, Result<Answer, ApiError>> {
        Box::pin(one_query(state, c, body, self, deadline))
    }
}

impl BatchItem for SearchRequest {
    fn run<'a>(
        self,
        state: &'a Arc<AppState>,
        c: &'a Arc<Collection>,
        body: &'a [u8],
        deadline: Instant,
    ) -> futures::future::BoxFuture<'a, Result<Answer, ApiError>> {
        Box::pin(one_legacy(state, c, body, self, deadline))
    }
}

impl BatchItem for model::RecommendRequest {
    fn run<'a>(
        self,
        state: &'a Arc<AppState>,
        c: &'a Arc<Collection>,
        body: &'a [u8],
        deadline: Instant,
    ) -> futures::future::BoxFuture<'a, Result<Answer, ApiError>> {
        Box::pin(one_recommend(state, c, body, self, deadline))
    }
}

impl BatchItem for model::DiscoverRequest {
    fn run<'a>(
        self,
        state: &'a Arc<AppState>,
        c: &'a Arc<Collection>,
        body: &'a [u8],
        deadline: Instant,
    ) -> futures::future::BoxFuture<'a, Result<Answer, ApiError>> {
        Box::pin(one_discover(state, c, body, self, deadline))
    }
}

/// Runs every search of a batch at once; the answers in order, each between `open` and
/// `close`.
async fn run_batch<T: BatchItem>(
    state: Arc<AppState>,
    name: &str,
    params: ReadParams,
    body: &[u8],
    open: &[u8],
    close: &[u8],
) -> ApiResult {
    let start = Instant::now();
    let items = batch_items::<T>(body)?;
    let c = collection(&state, name)?;
    let deadline = params.deadline(state.timeout);
    let answers = futures::future::try_join_all(
        items
            .into_iter()
            .map(|(raw, req)| req.run(&state, &c, raw.get().as_bytes(), deadline)),
    )
    .await?;
    Ok(batch_answer(start, &answers, open, close))
}

pub async fn query_batch(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Params(params): Params<ReadParams>,
    body: Bytes,
) -> ApiResult {
    run_batch::<QueryRequest>(state, &name, params, &body, b"{\"points\":", b"}").await
}

pub async fn search_batch(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Params(params): Params<ReadParams>,
    body: Bytes,
) -> ApiResult {
    run_batch::<SearchRequest>(state, &name, params, &body, b"", b"").await
}

/// The envelope around a batch's answers, as a JSON list of each answer between `open` and
/// `close`.
fn batch_answer(start: Instant, answers: &[Answer], open: &[u8], close: &[u8]) -> Response {
    let mut parts: Vec<&[u8]> = Vec::with_capacity(answers.len() * 4 + 2);
    parts.push(b"[");
    for (i, a) in answers.iter().enumerate() {
        if i > 0 {
            parts.push(b",");
        }
        parts.extend([open, a.as_slice(), close]);
    }
    parts.push(b"]");
    ok_raw(start, &parts)
}

pub async fn recommend_batch(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Params(params): Params<ReadParams>,
    body: Bytes,
) -> ApiResult {
    run_batch::<model::RecommendRequest>(state, &name, params, &body, b"", b"").await
}

pub async fn discover_batch(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Params(params): Params<ReadParams>,
    body: Bytes,
) -> ApiResult {
    run_batch::<model::DiscoverRequest>(state, &name, params, &body, b"", b"").await
}

/// A search endpoint, for a protocol that hands its requests over as REST bodies (gRPC).
#[derive(Debug, Clone, Copy)]
pub(crate) enum SearchKind {
    /// The universal query.
    Query,
    /// The legacy search.
    Search,
    /// The legacy recommendation.
    Recommend,
    /// The legacy discovery.
    Discover,
}

/// Runs searches of one kind on a collection, each given as its REST body (also its cache
/// key), all at once; the answers in order. A batch's errors name `searches[i]`.
pub(crate) async fn search_answers(
    state: &Arc<AppState>,
    name: &str,
    kind: SearchKind,
    bodies: &[Vec<u8>],
    deadline: Instant,
) -> Result<Vec<Answer>, ApiError> {
    convert::check_batch(bodies.len())?;
    let c = collection(state, name)?;
    match kind {
        SearchKind::Query => answers::<QueryRequest>(state, &c, bodies, deadline).await,
        SearchKind::Search => answers::<SearchRequest>(state, &c, bodies, deadline).await,
        SearchKind::Recommend => {
            answers::<model::RecommendRequest>(state, &c, bodies, deadline).await
        }
        SearchKind::Discover => {
            answers::<model::DiscoverRequest>(state, &c, bodies, deadline).await
        }
    }
}

async fn answers<T: BatchItem>(
    state: &Arc<AppState>,
    c: &Arc<Collection>,
    bodies: &[Vec<u8>],
    deadline: Instant,
) -> Result<Vec<Answer>, ApiError> {
    let items = bodies
        .iter()
        .enumerate()
        .map(|(i, body)| {
            let req: T = if bodies.len() == 1 {
                model::parse(body)?
            } else {
                model::parse_at(body, &format!("searches[{i}]"))?
            };
            Ok((body, req))
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    futures::future::try_join_all(
        items
            .into_iter()
            .map(|(body, req)| req.run(state, c, body, deadline)),
    )
    .await
}
