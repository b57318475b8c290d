//! `qdrant.Points`: writes, reads and searches, each through the REST body of its twin
//! endpoint and the code REST runs.

use super::json::{self, invalid, put};
use super::{deadline, seconds, unimplemented};
use crate::api::points as rest;
use crate::api::query::{search_answers, SearchKind};
use crate::error::ApiError;
use crate::model;
use crate::AppState;
use qdrant_client::qdrant as pb;
use serde_json::{json, Map, Value as Json};
use std::sync::Arc;
use std::time::Instant;
use tonic::{Request, Response, Status};

/// The points service over the router's state.
pub struct Points(pub Arc<AppState>);

/// A JSON body written out, for the typed model to read (errors name the field's path).
fn body(v: &Json) -> Vec<u8> {
    serde_json::to_vec(v).expect("JSON values serialise")
}

fn parse<T: serde::de::DeserializeOwned>(v: &Json) -> Result<T, ApiError> {
    model::parse(&body(v))
}

/// Applies an update and answers as Qdrant does: `Completed` when waited for, else
/// `Acknowledged`, with the operation id.
async fn apply(
    state: &Arc<AppState>,
    name: &str,
    update: Result<storage::Update, ApiError>,
    wait: Option<bool>,
) -> Result<Response<pb::PointsOperationResponse>, Status> {
    let start = Instant::now();
    let wait = wait.unwrap_or(false);
    let seq = rest::write(state, name, update?, wait).await?;
    Ok(operation(start, Some(seq), wait))
}

fn operation(
    start: Instant,
    seq: Option<u64>,
    wait: bool,
) -> Response<pb::PointsOperationResponse> {
    let status = if wait {
        pb::UpdateStatus::Completed
    } else {
        pb::UpdateStatus::Acknowledged
    };
    Response::new(pb::PointsOperationResponse {
        result: Some(pb::UpdateResult {
            operation_id: seq,
            status: status as i32,
        }),
        time: seconds(start),
        usage: None,
    })
}

fn refuse_shard_key(s: &Option<pb::ShardKeySelector>) -> Result<(), ApiError> {
    if s.is_some() {
        return Err(ApiError::not_implemented(
            "shard_key_selector (custom sharding is not served)",
        ));
    }
    Ok(())
}

fn point_json(i: usize, p: &pb::PointStruct) -> Result<Json, ApiError> {
    let at = format!("points[{i}]");
    let id =
        p.id.as_ref()
            .ok_or_else(|| invalid(format!("{at}.id is required")))?;
    let mut out = Map::new();
    out.insert("id".into(), json::id_json(id, &format!("{at}.id"))?);
    let vector = match &p.vectors {
        Some(v) => json::vectors_json(v, &format!("{at}.vector"))?,
        None => json!({}),
    };
    out.insert("vector".into(), vector);
    out.insert("payload".into(), Json::Object(json::map_json(&p.payload)));
    Ok(Json::Object(out))
}

fn update_mode_json(mode: Option<i32>) -> Result<Option<Json>, ApiError> {
    Ok(match mode {
        None => None,
        Some(m) => Some(json!(match pb::UpdateMode::try_from(m) {
            Ok(pb::UpdateMode::Upsert) => "upsert",
            Ok(pb::UpdateMode::InsertOnly) => "insert_only",
            Ok(pb::UpdateMode::UpdateOnly) => "update_only",
            Err(_) => return Err(invalid(format!("update_mode {m} is unknown"))),
        })),
    })
}

/// The selector merged into a body object (`points` or `filter`).
fn with_selector(
    mut out: Map<String, Json>,
    s: Option<&pb::PointsSelector>,
    field: &str,
) -> Result<Json, ApiError> {
    if let Json::Object(sel) = json::selector_json(s, field)? {
        out.extend(sel);
    }
    Ok(Json::Object(out))
}

fn field_type_name(t: i32) -> Result<&'static str, ApiError> {
    Ok(match pb::FieldType::try_from(t) {
        Ok(pb::FieldType::Keyword) => "keyword",
        Ok(pb::FieldType::Integer) => "integer",
        Ok(pb::FieldType::Float) => "float",
        Ok(pb::FieldType::Geo) => "geo",
        Ok(pb::FieldType::Text) => "text",
        Ok(pb::FieldType::Bool) => "bool",
        Ok(pb::FieldType::Datetime) => "datetime",
        Ok(pb::FieldType::Uuid) => "uuid",
        Err(_) => return Err(invalid(format!("field_type {t} is unknown"))),
    })
}

/// `SearchPoints` as REST's `SearchRequest`.
#[allow(deprecated)] // `vector` with `sparse_indices` is the form clients send
fn search_json(s: &pb::SearchPoints) -> Result<Json, ApiError> {
    refuse_shard_key(&s.shard_key_selector)?;
    let vector = match &s.sparse_indices {
        Some(ix) => json!({"indices": ix.data, "values": s.vector}),
        None => json!(s.vector),
    };
    let vector = match &s.vector_name {
        Some(name) => json!({"name": name, "vector": vector}),
        None => vector,
    };
    let mut out = Map::new();
    out.insert("vector".into(), vector);
    out.insert("limit".into(), json!(s.limit));
    put(&mut out, "offset", s.offset.map(Json::from));
    put(
        &mut out,
        "filter",
        s.filter.as_ref().map(json::filter_json).transpose()?,
    );
    put(
        &mut out,
        "params",
        s.params.as_ref().map(json::search_params_json),
    );
    put(
        &mut out,
        "score_threshold",
        s.score_threshold.map(Json::from),
    );
    put(
        &mut out,
        "with_payload",
        s.with_payload.as_ref().map(json::with_payload_json),
    );
    put(
        &mut out,
        "with_vector",
        s.with_vectors.as_ref().map(json::with_vectors_json),
    );
    Ok(Json::Object(out))
}

/// The fields a query and a prefetch share.
struct QueryParts<'a> {
    prefetch: &'a [pb::PrefetchQuery],
    query: Option<&'a pb::Query>,
    using: Option<&'a String>,
    filter: Option<&'a pb::Filter>,
    params: Option<&'a pb::SearchParams>,
    score_threshold: Option<f32>,
    limit: Option<u64>,
    lookup_from: Option<&'a pb::LookupLocation>,
}

impl QueryParts<'_> {
    fn write(self, out: &mut Map<String, Json>) -> Result<(), ApiError> {
        if !self.prefetch.is_empty() {
            let p = self
                .prefetch
                .iter()
                .map(prefetch_json)
                .collect::<Result<Vec<_>, _>>()?;
            out.insert("prefetch".into(), Json::Array(p));
        }
        put(out, "query", self.query.map(json::query_json).transpose()?);
        put(out, "using", self.using.map(|u| Json::String(u.clone())));
        put(
            out,
            "filter",
            self.filter.map(json::filter_json).transpose()?,
        );
        put(out, "params", self.params.map(json::search_params_json));
        put(out, "score_threshold", self.score_threshold.map(Json::from));
        put(out, "limit", self.limit.map(Json::from));
        put(out, "lookup_from", self.lookup_from.map(json::lookup_json));
        Ok(())
    }
}

fn prefetch_json(p: &pb::PrefetchQuery) -> Result<Json, ApiError> {
    let mut out = Map::new();
    QueryParts {
        prefetch: &p.prefetch,
        query: p.query.as_ref(),
        using: p.using.as_ref(),
        filter: p.filter.as_ref(),
        params: p.params.as_ref(),
        score_threshold: p.score_threshold,
        limit: p.limit,
        lookup_from: p.lookup_from.as_ref(),
    }
    .write(&mut out)?;
    Ok(Json::Object(out))
}

/// `QueryPoints` as REST's `QueryRequest`.
fn query_json(q: &pb::QueryPoints) -> Result<Json, ApiError> {
    refuse_shard_key(&q.shard_key_selector)?;
    let mut out = Map::new();
    QueryParts {
        prefetch: &q.prefetch,
        query: q.query.as_ref(),
        using: q.using.as_ref(),
        filter: q.filter.as_ref(),
        params: q.params.as_ref(),
        score_threshold: q.score_threshold,
        limit: q.limit,
        lookup_from: q.lookup_from.as_ref(),
    }
    .write(&mut out)?;
    put(&mut out, "offset", q.offset.map(Json::from));
    put(
        &mut out,
        "with_payload",
        q.with_payload.as_ref().map(json::with_payload_json),
    );
    put(
        &mut out,
        "with_vector",
        q.with_vectors.as_ref().map(json::with_vectors_json),
    );
    Ok(Json::Object(out))
}

/// Runs searches given as REST bodies; their answers as gRPC batches.
async fn searches(
    state: &Arc<AppState>,
    name: &str,
    kind: SearchKind,
    bodies: Result<Vec<Json>, ApiError>,
    timeout: Option<u64>,
) -> Result<Vec<Vec<pb::ScoredPoint>>, ApiError> {
    let bodies: Vec<Vec<u8>> = bodies?.iter().map(body).collect();
    let answers = search_answers(state, name, kind, &bodies, deadline(state, timeout)?).await?;
    answers.iter().map(|a| json::scored_points(a)).collect()
}

#[tonic::async_trait]
impl pb::points_server::Points for Points {
    async fn upsert(
        &self,
        request: Request<pb::UpsertPoints>,
    ) -> Result<Response<pb::PointsOperationResponse>, Status> {
        let r = request.into_inner();
        let update = (|| {
            refuse_shard_key(&r.shard_key_selector)?;
            let points = r
                .points
                .iter()
                .enumerate()
                .map(|(i, p)| point_json(i, p))
                .collect::<Result<Vec<_>, _>>()?;
            let mut out = Map::new();
            out.insert("points".into(), Json::Array(points));
            put(
                &mut out,
                "update_filter",
                r.update_filter
                    .as_ref()
                    .map(json::filter_json)
                    .transpose()?,
            );
            put(&mut out, "update_mode", update_mode_json(r.update_mode)?);
            crate::convert::upsert(parse(&Json::Object(out))?)
        })();
        apply(&self.0, &r.collection_name, update, r.wait).await
    }

    async fn delete(
        &self,
        request: Request<pb::DeletePoints>,
    ) -> Result<Response<pb::PointsOperationResponse>, Status> {
        let r = request.into_inner();
        let update = (|| {
            refuse_shard_key(&r.shard_key_selector)?;
            let sel = json::selector_json(r.points.as_ref(), "points")?;
            crate::convert::delete(parse(&sel)?)
        })();
        apply(&self.0, &r.collection_name, update, r.wait).await
    }

    async fn get(
        &self,
        request: Request<pb::GetPoints>,
    ) -> Result<Response<pb::GetResponse>, Status> {
        let start = Instant::now();
        let r = request.into_inner();
        refuse_shard_key(&r.shard_key_selector)?;
        let ids = r
            .ids
            .iter()
            .enumerate()
            .map(|(i, id)| json::id_json(id, &format!("ids[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        let mut out = Map::new();
        out.insert("ids".into(), Json::Array(ids));
        put(
            &mut out,
            "with_payload",
            r.with_payload.as_ref().map(json::with_payload_json),
        );
        put(
            &mut out,
            "with_vector",
            r.with_vectors.as_ref().map(json::with_vectors_json),
        );
        let req = parse(&Json::Object(out))?;
        let (named, records) = rest::retrieve_records(
            &self.0,
            &r.collection_name,
            req,
            deadline(&self.0, r.timeout)?,
        )
        .await?;
        Ok(Response::new(pb::GetResponse {
            result: records
                .iter()
                .map(|p| json::retrieved_point(named, p, None))
                .collect(),
            time: seconds(start),
            usage: None,
        }))
    }

    async fn update_vectors(
        &self,
        request: Request<pb::UpdatePointVectors>,
    ) -> Result<Response<pb::PointsOperationResponse>, Status> {
        let r = request.into_inner();
        let update = (|| {
            refuse_shard_key(&r.shard_key_selector)?;
            let points = r
                .points
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let at = format!("points[{i}]");
                    let id =
                        p.id.as_ref()
                            .ok_or_else(|| invalid(format!("{at}.id is required")))?;
                    let vector = match &p.vectors {
                        Some(v) => json::vectors_json(v, &format!("{at}.vector"))?,
                        None => return Err(invalid(format!("{at}.vectors is required"))),
                    };
                    Ok(json!({"id": json::id_json(id, &format!("{at}.id"))?, "vector": vector}))
                })
                .collect::<Result<Vec<_>, ApiError>>()?;
            let mut out = Map::new();
            out.insert("points".into(), Json::Array(points));
            put(
                &mut out,
                "update_filter",
                r.update_filter
                    .as_ref()
                    .map(json::filter_json)
                    .transpose()?,
            );
            crate::convert::update_vectors(parse(&Json::Object(out))?)
        })();
        apply(&self.0, &r.collection_name, update, r.wait).await
    }

    async fn delete_vectors(
        &self,
        request: Request<pb::DeletePointVectors>,
    ) -> Result<Response<pb::PointsOperationResponse>, Status> {
        let r = request.into_inner();
        let update = (|| {
            refuse_shard_key(&r.shard_key_selector)?;
            let mut out = Map::new();
            let names = r
                .vectors
                .as_ref()
                .map(|v| v.names.clone())
                .unwrap_or_default();
            out.insert("vector".into(), json!(names));
            let body = with_selector(out, r.points_selector.as_ref(), "points_selector")?;
            crate::convert::delete_vectors(parse(&body)?)
        })();
        apply(&self.0, &r.collection_name, update, r.wait).await
    }

    async fn set_payload(
        &self,
        request: Request<pb::SetPayloadPoints>,
    ) -> Result<Response<pb::PointsOperationResponse>, Status> {
        let r = request.into_inner();
        let update = set_payload_body(&r).and_then(|b| crate::convert::set_payload(parse(&b)?));
        apply(&self.0, &r.collection_name, update, r.wait).await
    }

    async fn overwrite_payload(
        &self,
        request: Request<pb::SetPayloadPoints>,
    ) -> Result<Response<pb::PointsOperationResponse>, Status> {
        let r = request.into_inner();
        let update =
            set_payload_body(&r).and_then(|b| crate::convert::overwrite_payload(parse(&b)?));
        apply(&self.0, &r.collection_name, update, r.wait).await
    }

    async fn delete_payload(
        &self,
        request: Request<pb::DeletePayloadPoints>,
    ) -> Result<Response<pb::PointsOperationResponse>, Status> {
        let r = request.into_inner();
        let update = (|| {
            refuse_shard_key(&r.shard_key_selector)?;
            let mut out = Map::new();
            out.insert("keys".into(), json!(r.keys));
            let body = with_selector(out, r.points_selector.as_ref(), "points_selector")?;
            crate::convert::delete_payload(parse(&body)?)
        })();
        apply(&self.0, &r.collection_name, update, r.wait).await
    }

    async fn clear_payload(
        &self,
        request: Request<pb::ClearPayloadPoints>,
    ) -> Result<Response<pb::PointsOperationResponse>, Status> {
        let r = request.into_inner();
        let update = (|| {
            refuse_shard_key(&r.shard_key_selector)?;
            let sel = json::selector_json(r.points.as_ref(), "points")?;
            crate::convert::clear_payload(parse(&sel)?)
        })();
        apply(&self.0, &r.collection_name, update, r.wait).await
    }

    async fn create_field_index(
        &self,
        request: Request<pb::CreateFieldIndexCollection>,
    ) -> Result<Response<pb::PointsOperationResponse>, Status> {
        let start = Instant::now();
        let r = request.into_inner();
        if r.field_index_params.is_some() {
            return Err(ApiError::not_implemented(
                "field_index_params over gRPC (index parameters are served over REST)",
            )
            .into());
        }
        let t = r
            .field_type
            .ok_or_else(|| invalid("field_type is required"))?;
        let body = model::CreateFieldIndex {
            field_name: r.field_name,
            field_schema: Some(json!(field_type_name(t)?)),
            field_type: None,
        };
        crate::api::collections::create_payload_index(&self.0, &r.collection_name, body).await?;
        Ok(operation(start, Some(0), r.wait.unwrap_or(false)))
    }

    async fn delete_field_index(
        &self,
        request: Request<pb::DeleteFieldIndexCollection>,
    ) -> Result<Response<pb::PointsOperationResponse>, Status> {
        let start = Instant::now();
        let r = request.into_inner();
        crate::api::collections::delete_payload_index(&self.0, &r.collection_name, r.field_name)
            .await?;
        Ok(operation(start, Some(0), r.wait.unwrap_or(false)))
    }

    async fn create_vector_name(
        &self,
        _request: Request<pb::CreateVectorNameRequest>,
    ) -> Result<Response<pb::PointsOperationResponse>, Status> {
        unimplemented("Points/CreateVectorName")
    }

    async fn delete_vector_name(
        &self,
        _request: Request<pb::DeleteVectorNameRequest>,
    ) -> Result<Response<pb::PointsOperationResponse>, Status> {
        unimplemented("Points/DeleteVectorName")
    }

    async fn search(
        &self,
        request: Request<pb::SearchPoints>,
    ) -> Result<Response<pb::SearchResponse>, Status> {
        let start = Instant::now();
        let r = request.into_inner();
        let mut answers = searches(
            &self.0,
            &r.collection_name,
            SearchKind::Search,
            search_json(&r).map(|b| vec![b]),
            r.timeout,
        )
        .await?;
        Ok(Response::new(pb::SearchResponse {
            result: answers.pop().unwrap_or_default(),
            time: seconds(start),
            usage: None,
        }))
    }

    async fn search_batch(
        &self,
        request: Request<pb::SearchBatchPoints>,
    ) -> Result<Response<pb::SearchBatchResponse>, Status> {
        let start = Instant::now();
        let r = request.into_inner();
        let bodies = r.search_points.iter().map(search_json).collect();
        let answers = searches(
            &self.0,
            &r.collection_name,
            SearchKind::Search,
            bodies,
            r.timeout,
        )
        .await?;
        Ok(Response::new(pb::SearchBatchResponse {
            result: answers
                .into_iter()
                .map(|result| pb::BatchResult { result })
                .collect(),
            time: seconds(start),
            usage: None,
        }))
    }

    async fn search_groups(
        &self,
        _request: Request<pb::SearchPointGroups>,
    ) -> Result<Response<pb::SearchGroupsResponse>, Status> {
        unimplemented("Points/SearchGroups")
    }

    async fn scroll(
        &self,
        request: Request<pb::ScrollPoints>,
    ) -> Result<Response<pb::ScrollResponse>, Status> {
        let start = Instant::now();
        let r = request.into_inner();
        refuse_shard_key(&r.shard_key_selector)?;
        let mut out = Map::new();
        put(
            &mut out,
            "filter",
            r.filter.as_ref().map(json::filter_json).transpose()?,
        );
        put(
            &mut out,
            "offset",
            r.offset
                .as_ref()
                .map(|id| json::id_json(id, "offset"))
                .transpose()?,
        );
        put(&mut out, "limit", r.limit.map(Json::from));
        put(
            &mut out,
            "with_payload",
            r.with_payload.as_ref().map(json::with_payload_json),
        );
        put(
            &mut out,
            "with_vector",
            r.with_vectors.as_ref().map(json::with_vectors_json),
        );
        put(
            &mut out,
            "order_by",
            r.order_by.as_ref().map(json::order_by_json).transpose()?,
        );
        let req = parse(&Json::Object(out))?;
        let page = rest::scroll_page(
            &self.0,
            &r.collection_name,
            req,
            deadline(&self.0, r.timeout)?,
        )
        .await?;
        Ok(Response::new(pb::ScrollResponse {
            next_page_offset: page.next.map(json::id_pb),
            result: page
                .points
                .iter()
                .map(|(p, v)| json::retrieved_point(page.named, p, *v))
                .collect(),
            time: seconds(start),
            usage: None,
        }))
    }

    async fn recommend(
        &self,
        _request: Request<pb::RecommendPoints>,
    ) -> Result<Response<pb::RecommendResponse>, Status> {
        unimplemented("Points/Recommend (use Points/Query with a recommend query)")
    }

    async fn recommend_batch(
        &self,
        _request: Request<pb::RecommendBatchPoints>,
    ) -> Result<Response<pb::RecommendBatchResponse>, Status> {
        unimplemented("Points/RecommendBatch (use Points/QueryBatch with recommend queries)")
    }

    async fn recommend_groups(
        &self,
        _request: Request<pb::RecommendPointGroups>,
    ) -> Result<Response<pb::RecommendGroupsResponse>, Status> {
        unimplemented("Points/RecommendGroups")
    }

    async fn discover(
        &self,
        _request: Request<pb::DiscoverPoints>,
    ) -> Result<Response<pb::DiscoverResponse>, Status> {
        unimplemented("Points/Discover (use Points/Query with a discover query)")
    }

    async fn discover_batch(
        &self,
        _request: Request<pb::DiscoverBatchPoints>,
    ) -> Result<Response<pb::DiscoverBatchResponse>, Status> {
        unimplemented("Points/DiscoverBatch (use Points/QueryBatch with discover queries)")
    }

    async fn count(
        &self,
        request: Request<pb::CountPoints>,
    ) -> Result<Response<pb::CountResponse>, Status> {
        let start = Instant::now();
        let r = request.into_inner();
        refuse_shard_key(&r.shard_key_selector)?;
        let mut out = Map::new();
        put(
            &mut out,
            "filter",
            r.filter.as_ref().map(json::filter_json).transpose()?,
        );
        put(&mut out, "exact", r.exact.map(Json::from));
        let req = parse(&Json::Object(out))?;
        let count = rest::count_points(
            &self.0,
            &r.collection_name,
            req,
            deadline(&self.0, r.timeout)?,
        )
        .await?;
        Ok(Response::new(pb::CountResponse {
            result: Some(pb::CountResult {
                count: count as u64,
            }),
            time: seconds(start),
            usage: None,
        }))
    }

    async fn update_batch(
        &self,
        _request: Request<pb::UpdateBatchPoints>,
    ) -> Result<Response<pb::UpdateBatchResponse>, Status> {
        unimplemented("Points/UpdateBatch")
    }

    async fn query(
        &self,
        request: Request<pb::QueryPoints>,
    ) -> Result<Response<pb::QueryResponse>, Status> {
        let start = Instant::now();
        let r = request.into_inner();
        let mut answers = searches(
            &self.0,
            &r.collection_name,
            SearchKind::Query,
            query_json(&r).map(|b| vec![b]),
            r.timeout,
        )
        .await?;
        Ok(Response::new(pb::QueryResponse {
            result: answers.pop().unwrap_or_default(),
            time: seconds(start),
            usage: None,
        }))
    }

    async fn query_batch(
        &self,
        request: Request<pb::QueryBatchPoints>,
    ) -> Result<Response<pb::QueryBatchResponse>, Status> {
        let start = Instant::now();
        let r = request.into_inner();
        let bodies = r.query_points.iter().map(query_json).collect();
        let answers = searches(
            &self.0,
            &r.collection_name,
            SearchKind::Query,
            bodies,
            r.timeout,
        )
        .await?;
        Ok(Response::new(pb::QueryBatchResponse {
            result: answers
                .into_iter()
                .map(|result| pb::BatchResult { result })
                .collect(),
            time: seconds(start),
            usage: None,
        }))
    }

    async fn query_groups(
        &self,
        _request: Request<pb::QueryPointGroups>,
    ) -> Result<Response<pb::QueryGroupsResponse>, Status> {
        unimplemented("Points/QueryGroups")
    }

    async fn facet(
        &self,
        _request: Request<pb::FacetCounts>,
    ) -> Result<Response<pb::FacetResponse>, Status> {
        unimplemented("Points/Facet")
    }

    async fn search_matrix_pairs(
        &self,
        _request: Request<pb::SearchMatrixPoints>,
    ) -> Result<Response<pb::SearchMatrixPairsResponse>, Status> {
        unimplemented("Points/SearchMatrixPairs")
    }

    async fn search_matrix_offsets(
        &self,
        _request: Request<pb::SearchMatrixPoints>,
    ) -> Result<Response<pb::SearchMatrixOffsetsResponse>, Status> {
        unimplemented("Points/SearchMatrixOffsets")
    }
}

fn set_payload_body(r: &pb::SetPayloadPoints) -> Result<Json, ApiError> {
    refuse_shard_key(&r.shard_key_selector)?;
    let mut out = Map::new();
    out.insert("payload".into(), Json::Object(json::map_json(&r.payload)));
    put(&mut out, "key", r.key.clone().map(Json::String));
    with_selector(out, r.points_selector.as_ref(), "points_selector")
}
