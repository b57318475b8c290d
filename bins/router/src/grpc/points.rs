//! `qdrant.Points`: writes, reads and searches, each through the REST body of its twin
//! endpoint and the code REST runs.

use super::json::{self, invalid, put};
use super::{deadline, read_params, rest_result, seconds, write_params};
use crate::api::points::{self as rest, WriteKind};
use crate::api::query::{search_answers, SearchKind};
use crate::api::{Body, Params};
use crate::error::ApiError;
use crate::model;
use crate::AppState;
use axum::extract::{Path, State};
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

/// Applies a write given as its REST twin's body and answers as Qdrant does: `Completed`
/// when waited for, else `Acknowledged`, with the operation id.
async fn apply(
    state: &Arc<AppState>,
    name: &str,
    write: Result<(WriteKind, Json), ApiError>,
    wait: Option<bool>,
) -> Result<Response<pb::PointsOperationResponse>, Status> {
    let start = Instant::now();
    let wait = wait.unwrap_or(false);
    let (kind, json) = write?;
    let seq = rest::write_body(state, name, kind, &body(&json), wait).await?;
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

fn threshold(t: Option<f32>) -> Result<Option<Json>, ApiError> {
    t.map(|t| json::finite(f64::from(t), "score_threshold"))
        .transpose()
}

/// A request's `shard_key_selector` as REST's `shard_key` (REST's handlers decide what it
/// selects, or refuse it where they do not serve it).
fn shard_key_json(s: &Option<pb::ShardKeySelector>) -> Result<Option<Json>, ApiError> {
    let Some(s) = s else {
        return Ok(None);
    };
    let key = |k: &pb::ShardKey, at: &str| match &k.key {
        Some(pb::shard_key::Key::Keyword(w)) => Ok(Json::String(w.clone())),
        Some(pb::shard_key::Key::Number(n)) => Ok(Json::from(*n)),
        None => Err(invalid(format!("{at}: a shard key without a value"))),
    };
    let keys = s
        .shard_keys
        .iter()
        .enumerate()
        .map(|(i, k)| key(k, &format!("shard_key_selector.shard_keys[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(match (&s.fallback, keys.as_slice()) {
        (None, [one]) => one.clone(),
        (None, _) => Json::Array(keys),
        (Some(f), [one]) => json!({
            "target": one,
            "fallback": key(f, "shard_key_selector.fallback")?,
        }),
        (Some(_), _) => {
            return Err(invalid(
                "shard_key_selector: a fallback goes with exactly one shard key",
            ))
        }
    }))
}

/// `body` with the request's shard keys added.
fn keyed(mut body: Json, s: &Option<pb::ShardKeySelector>) -> Result<Json, ApiError> {
    if let (Some(k), Json::Object(m)) = (shard_key_json(s)?, &mut body) {
        m.insert("shard_key".into(), k);
    }
    Ok(body)
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
    let shard_key = shard_key_json(&s.shard_key_selector)?;
    let vector = match &s.sparse_indices {
        Some(ix) => json!({"indices": ix.data, "values": s.vector}),
        None => json!(s.vector),
    };
    let vector = match &s.vector_name {
        Some(name) => json!({"name": name, "vector": vector}),
        None => vector,
    };
    let mut out = Map::new();
    put(&mut out, "shard_key", shard_key);
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
        s.params
            .as_ref()
            .map(json::search_params_json)
            .transpose()?,
    );
    put(&mut out, "score_threshold", threshold(s.score_threshold)?);
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
        put(
            out,
            "params",
            self.params.map(json::search_params_json).transpose()?,
        );
        put(out, "score_threshold", threshold(self.score_threshold)?);
        put(out, "limit", self.limit.map(Json::from));
        put(
            out,
            "lookup_from",
            self.lookup_from.map(json::lookup_json).transpose()?,
        );
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
    let shard_key = shard_key_json(&q.shard_key_selector)?;
    let mut out = Map::new();
    put(&mut out, "shard_key", shard_key);
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

/// Runs a read at the consistency its message asks for (Qdrant's `read_consistency`),
/// checked first, within its `timeout`: [`AppState::read_at`].
async fn consistent<T>(
    state: &Arc<AppState>,
    level: Option<pb::ReadConsistency>,
    timeout: Option<u64>,
    read: impl std::future::Future<Output = Result<T, Status>>,
) -> Result<T, Status> {
    if let Some(l) = &level {
        shard_router::remote::check_read_consistency(l).map_err(Status::invalid_argument)?;
    }
    state.read_at(level, timeout, read).await?
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
            let shard_key = shard_key_json(&r.shard_key_selector)?;
            let points = r
                .points
                .iter()
                .enumerate()
                .map(|(i, p)| point_json(i, p))
                .collect::<Result<Vec<_>, _>>()?;
            let mut out = Map::new();
            put(&mut out, "shard_key", shard_key);
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
            Ok((WriteKind::Upsert, Json::Object(out)))
        })();
        apply(&self.0, &r.collection_name, update, r.wait).await
    }

    async fn delete(
        &self,
        request: Request<pb::DeletePoints>,
    ) -> Result<Response<pb::PointsOperationResponse>, Status> {
        let r = request.into_inner();
        let update = (|| {
            let sel = json::selector_json(r.points.as_ref(), "points")?;
            Ok((WriteKind::Delete, keyed(sel, &r.shard_key_selector)?))
        })();
        apply(&self.0, &r.collection_name, update, r.wait).await
    }

    async fn get(
        &self,
        request: Request<pb::GetPoints>,
    ) -> Result<Response<pb::GetResponse>, Status> {
        let (level, timeout) = (
            request.get_ref().read_consistency,
            request.get_ref().timeout,
        );
        consistent(&self.0, level, timeout, async move {
            let start = Instant::now();
            let r = request.into_inner();
            let shard_key = shard_key_json(&r.shard_key_selector)?;
            let ids = r
                .ids
                .iter()
                .enumerate()
                .map(|(i, id)| json::id_json(id, &format!("ids[{i}]")))
                .collect::<Result<Vec<_>, _>>()?;
            let mut out = Map::new();
            put(&mut out, "shard_key", shard_key);
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
        })
        .await
    }

    async fn update_vectors(
        &self,
        request: Request<pb::UpdatePointVectors>,
    ) -> Result<Response<pb::PointsOperationResponse>, Status> {
        let r = request.into_inner();
        let update = (|| {
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
            put(
                &mut out,
                "shard_key",
                shard_key_json(&r.shard_key_selector)?,
            );
            Ok((WriteKind::UpdateVectors, Json::Object(out)))
        })();
        apply(&self.0, &r.collection_name, update, r.wait).await
    }

    async fn delete_vectors(
        &self,
        request: Request<pb::DeletePointVectors>,
    ) -> Result<Response<pb::PointsOperationResponse>, Status> {
        let r = request.into_inner();
        let update = (|| {
            let shard_key = shard_key_json(&r.shard_key_selector)?;
            let mut out = Map::new();
            put(&mut out, "shard_key", shard_key);
            let names = r
                .vectors
                .as_ref()
                .map(|v| v.names.clone())
                .unwrap_or_default();
            out.insert("vector".into(), json!(names));
            let body = with_selector(out, r.points_selector.as_ref(), "points_selector")?;
            Ok((WriteKind::DeleteVectors, body))
        })();
        apply(&self.0, &r.collection_name, update, r.wait).await
    }

    async fn set_payload(
        &self,
        request: Request<pb::SetPayloadPoints>,
    ) -> Result<Response<pb::PointsOperationResponse>, Status> {
        let r = request.into_inner();
        let update = set_payload_body(&r).map(|b| (WriteKind::SetPayload, b));
        apply(&self.0, &r.collection_name, update, r.wait).await
    }

    async fn overwrite_payload(
        &self,
        request: Request<pb::SetPayloadPoints>,
    ) -> Result<Response<pb::PointsOperationResponse>, Status> {
        let r = request.into_inner();
        let update = set_payload_body(&r).map(|b| (WriteKind::OverwritePayload, b));
        apply(&self.0, &r.collection_name, update, r.wait).await
    }

    async fn delete_payload(
        &self,
        request: Request<pb::DeletePayloadPoints>,
    ) -> Result<Response<pb::PointsOperationResponse>, Status> {
        let r = request.into_inner();
        let update = (|| {
            let shard_key = shard_key_json(&r.shard_key_selector)?;
            let mut out = Map::new();
            put(&mut out, "shard_key", shard_key);
            out.insert("keys".into(), json!(r.keys));
            let body = with_selector(out, r.points_selector.as_ref(), "points_selector")?;
            Ok((WriteKind::DeletePayload, body))
        })();
        apply(&self.0, &r.collection_name, update, r.wait).await
    }

    async fn clear_payload(
        &self,
        request: Request<pb::ClearPayloadPoints>,
    ) -> Result<Response<pb::PointsOperationResponse>, Status> {
        let r = request.into_inner();
        let update = (|| {
            let sel = json::selector_json(r.points.as_ref(), "points")?;
            Ok((WriteKind::ClearPayload, keyed(sel, &r.shard_key_selector)?))
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
        request: Request<pb::CreateVectorNameRequest>,
    ) -> Result<Response<pb::PointsOperationResponse>, Status> {
        let start = Instant::now();
        let r = request.into_inner();
        let config: model::VectorNameConfig =
            parse(&super::collections::vector_name_config_json(&r)?)?;
        rest_result(
            crate::api::collections::create_vector(
                State(self.0.clone()),
                Path((r.collection_name, r.vector_name)),
                Params(write_params(r.wait)),
                Body(config),
            )
            .await,
        )
        .await?;
        Ok(operation(start, Some(0), r.wait.unwrap_or(false)))
    }

    async fn delete_vector_name(
        &self,
        request: Request<pb::DeleteVectorNameRequest>,
    ) -> Result<Response<pb::PointsOperationResponse>, Status> {
        let start = Instant::now();
        let r = request.into_inner();
        rest_result(
            crate::api::collections::delete_vector(
                State(self.0.clone()),
                Path((r.collection_name, r.vector_name)),
                Params(write_params(r.wait)),
            )
            .await,
        )
        .await?;
        Ok(operation(start, Some(0), r.wait.unwrap_or(false)))
    }

    async fn search(
        &self,
        request: Request<pb::SearchPoints>,
    ) -> Result<Response<pb::SearchResponse>, Status> {
        let (level, timeout) = (
            request.get_ref().read_consistency,
            request.get_ref().timeout,
        );
        consistent(&self.0, level, timeout, async move {
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
        })
        .await
    }

    async fn search_batch(
        &self,
        request: Request<pb::SearchBatchPoints>,
    ) -> Result<Response<pb::SearchBatchResponse>, Status> {
        let (level, timeout) = (
            request.get_ref().read_consistency,
            request.get_ref().timeout,
        );
        consistent(&self.0, level, timeout, async move {
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
        })
        .await
    }

    async fn search_groups(
        &self,
        request: Request<pb::SearchPointGroups>,
    ) -> Result<Response<pb::SearchGroupsResponse>, Status> {
        let (level, timeout) = (
            request.get_ref().read_consistency,
            request.get_ref().timeout,
        );
        consistent(&self.0, level, timeout, async move {
            let start = Instant::now();
            let r = request.into_inner();
            let search = pb::SearchPoints {
                collection_name: String::new(),
                vector: r.vector.clone(),
                filter: r.filter.clone(),
                limit: u64::from(r.limit),
                with_payload: r.with_payload.clone(),
                params: r.params,
                score_threshold: r.score_threshold,
                offset: None,
                vector_name: r.vector_name.clone(),
                with_vectors: r.with_vectors.clone(),
                read_consistency: None,
                timeout: None,
                shard_key_selector: r.shard_key_selector.clone(),
                sparse_indices: r.sparse_indices.clone(),
            };
            let Json::Object(mut out) = search_json(&search)? else {
                unreachable!("a search body is an object")
            };
            group_fields(
                &mut out,
                &r.group_by,
                Some(u64::from(r.group_size)),
                r.with_lookup.as_ref(),
            );
            let groups = groups(
                &self.0,
                r.collection_name,
                r.timeout,
                out,
                crate::api::groups::search_groups,
            )
            .await?;
            Ok(Response::new(pb::SearchGroupsResponse {
                result: Some(groups),
                time: seconds(start),
                usage: None,
            }))
        })
        .await
    }

    async fn scroll(
        &self,
        request: Request<pb::ScrollPoints>,
    ) -> Result<Response<pb::ScrollResponse>, Status> {
        let (level, timeout) = (
            request.get_ref().read_consistency,
            request.get_ref().timeout,
        );
        consistent(&self.0, level, timeout, async move {
            let start = Instant::now();
            let r = request.into_inner();
            let shard_key = shard_key_json(&r.shard_key_selector)?;
            let mut out = Map::new();
            put(&mut out, "shard_key", shard_key);
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
        })
        .await
    }

    async fn recommend(
        &self,
        request: Request<pb::RecommendPoints>,
    ) -> Result<Response<pb::RecommendResponse>, Status> {
        let (level, timeout) = (
            request.get_ref().read_consistency,
            request.get_ref().timeout,
        );
        consistent(&self.0, level, timeout, async move {
            let start = Instant::now();
            let r = request.into_inner();
            let mut answers = searches(
                &self.0,
                &r.collection_name,
                SearchKind::Recommend,
                recommend_json(&r).map(|b| vec![b]),
                r.timeout,
            )
            .await?;
            Ok(Response::new(pb::RecommendResponse {
                result: answers.pop().unwrap_or_default(),
                time: seconds(start),
                usage: None,
            }))
        })
        .await
    }

    async fn recommend_batch(
        &self,
        request: Request<pb::RecommendBatchPoints>,
    ) -> Result<Response<pb::RecommendBatchResponse>, Status> {
        let (level, timeout) = (
            request.get_ref().read_consistency,
            request.get_ref().timeout,
        );
        consistent(&self.0, level, timeout, async move {
            let start = Instant::now();
            let r = request.into_inner();
            let bodies = r.recommend_points.iter().map(recommend_json).collect();
            let answers = searches(
                &self.0,
                &r.collection_name,
                SearchKind::Recommend,
                bodies,
                r.timeout,
            )
            .await?;
            Ok(Response::new(pb::RecommendBatchResponse {
                result: answers
                    .into_iter()
                    .map(|result| pb::BatchResult { result })
                    .collect(),
                time: seconds(start),
                usage: None,
            }))
        })
        .await
    }

    async fn recommend_groups(
        &self,
        request: Request<pb::RecommendPointGroups>,
    ) -> Result<Response<pb::RecommendGroupsResponse>, Status> {
        let (level, timeout) = (
            request.get_ref().read_consistency,
            request.get_ref().timeout,
        );
        consistent(&self.0, level, timeout, async move {
            let start = Instant::now();
            let r = request.into_inner();
            let recommend = pb::RecommendPoints {
                collection_name: String::new(),
                positive: r.positive.clone(),
                negative: r.negative.clone(),
                filter: r.filter.clone(),
                limit: u64::from(r.limit),
                with_payload: r.with_payload.clone(),
                params: r.params,
                score_threshold: r.score_threshold,
                offset: None,
                using: r.using.clone(),
                with_vectors: r.with_vectors.clone(),
                lookup_from: r.lookup_from.clone(),
                read_consistency: None,
                strategy: r.strategy,
                positive_vectors: r.positive_vectors.clone(),
                negative_vectors: r.negative_vectors.clone(),
                timeout: None,
                shard_key_selector: r.shard_key_selector.clone(),
            };
            let Json::Object(mut out) = recommend_json(&recommend)? else {
                unreachable!("a recommend body is an object")
            };
            group_fields(
                &mut out,
                &r.group_by,
                Some(u64::from(r.group_size)),
                r.with_lookup.as_ref(),
            );
            let groups = groups(
                &self.0,
                r.collection_name,
                r.timeout,
                out,
                crate::api::groups::recommend_groups,
            )
            .await?;
            Ok(Response::new(pb::RecommendGroupsResponse {
                result: Some(groups),
                time: seconds(start),
                usage: None,
            }))
        })
        .await
    }

    async fn discover(
        &self,
        request: Request<pb::DiscoverPoints>,
    ) -> Result<Response<pb::DiscoverResponse>, Status> {
        let (level, timeout) = (
            request.get_ref().read_consistency,
            request.get_ref().timeout,
        );
        consistent(&self.0, level, timeout, async move {
            let start = Instant::now();
            let r = request.into_inner();
            let mut answers = searches(
                &self.0,
                &r.collection_name,
                SearchKind::Discover,
                discover_json(&r).map(|b| vec![b]),
                r.timeout,
            )
            .await?;
            Ok(Response::new(pb::DiscoverResponse {
                result: answers.pop().unwrap_or_default(),
                time: seconds(start),
                usage: None,
            }))
        })
        .await
    }

    async fn discover_batch(
        &self,
        request: Request<pb::DiscoverBatchPoints>,
    ) -> Result<Response<pb::DiscoverBatchResponse>, Status> {
        let (level, timeout) = (
            request.get_ref().read_consistency,
            request.get_ref().timeout,
        );
        consistent(&self.0, level, timeout, async move {
            let start = Instant::now();
            let r = request.into_inner();
            let bodies = r.discover_points.iter().map(discover_json).collect();
            let answers = searches(
                &self.0,
                &r.collection_name,
                SearchKind::Discover,
                bodies,
                r.timeout,
            )
            .await?;
            Ok(Response::new(pb::DiscoverBatchResponse {
                result: answers
                    .into_iter()
                    .map(|result| pb::BatchResult { result })
                    .collect(),
                time: seconds(start),
                usage: None,
            }))
        })
        .await
    }

    async fn count(
        &self,
        request: Request<pb::CountPoints>,
    ) -> Result<Response<pb::CountResponse>, Status> {
        let (level, timeout) = (
            request.get_ref().read_consistency,
            request.get_ref().timeout,
        );
        consistent(&self.0, level, timeout, async move {
            let start = Instant::now();
            let r = request.into_inner();
            let shard_key = shard_key_json(&r.shard_key_selector)?;
            let mut out = Map::new();
            put(&mut out, "shard_key", shard_key);
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
        })
        .await
    }

    async fn update_batch(
        &self,
        request: Request<pb::UpdateBatchPoints>,
    ) -> Result<Response<pb::UpdateBatchResponse>, Status> {
        let start = Instant::now();
        let r = request.into_inner();
        let operations = r
            .operations
            .iter()
            .enumerate()
            .map(|(i, op)| batch_operation_json(op, &format!("operations[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        let n = operations.len();
        let wait = r.wait.unwrap_or(false);
        let seq = rest::write_body(
            &self.0,
            &r.collection_name,
            WriteKind::Batch,
            &body(&json!({ "operations": operations })),
            wait,
        )
        .await?;
        let status = if wait {
            pb::UpdateStatus::Completed
        } else {
            pb::UpdateStatus::Acknowledged
        };
        let one = pb::UpdateResult {
            operation_id: Some(seq),
            status: status as i32,
        };
        Ok(Response::new(pb::UpdateBatchResponse {
            result: vec![one; n],
            time: seconds(start),
            usage: None,
        }))
    }

    async fn query(
        &self,
        request: Request<pb::QueryPoints>,
    ) -> Result<Response<pb::QueryResponse>, Status> {
        let (level, timeout) = (
            request.get_ref().read_consistency,
            request.get_ref().timeout,
        );
        consistent(&self.0, level, timeout, async move {
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
        })
        .await
    }

    async fn query_batch(
        &self,
        request: Request<pb::QueryBatchPoints>,
    ) -> Result<Response<pb::QueryBatchResponse>, Status> {
        let (level, timeout) = (
            request.get_ref().read_consistency,
            request.get_ref().timeout,
        );
        consistent(&self.0, level, timeout, async move {
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
        })
        .await
    }

    async fn query_groups(
        &self,
        request: Request<pb::QueryPointGroups>,
    ) -> Result<Response<pb::QueryGroupsResponse>, Status> {
        let (level, timeout) = (
            request.get_ref().read_consistency,
            request.get_ref().timeout,
        );
        consistent(&self.0, level, timeout, async move {
            let start = Instant::now();
            let r = request.into_inner();
            let shard_key = shard_key_json(&r.shard_key_selector)?;
            let mut out = Map::new();
            put(&mut out, "shard_key", shard_key);
            QueryParts {
                prefetch: &r.prefetch,
                query: r.query.as_ref(),
                using: r.using.as_ref(),
                filter: r.filter.as_ref(),
                params: r.params.as_ref(),
                score_threshold: r.score_threshold,
                limit: r.limit,
                lookup_from: r.lookup_from.as_ref(),
            }
            .write(&mut out)?;
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
            group_fields(&mut out, &r.group_by, r.group_size, r.with_lookup.as_ref());
            let groups = groups(
                &self.0,
                r.collection_name,
                r.timeout,
                out,
                crate::api::groups::query_groups,
            )
            .await?;
            Ok(Response::new(pb::QueryGroupsResponse {
                result: Some(groups),
                time: seconds(start),
                usage: None,
            }))
        })
        .await
    }

    async fn facet(
        &self,
        request: Request<pb::FacetCounts>,
    ) -> Result<Response<pb::FacetResponse>, Status> {
        let (level, timeout) = (
            request.get_ref().read_consistency,
            request.get_ref().timeout,
        );
        consistent(&self.0, level, timeout, async move {
            let start = Instant::now();
            let r = request.into_inner();
            let shard_key = shard_key_json(&r.shard_key_selector)?;
            let mut out = Map::new();
            put(&mut out, "shard_key", shard_key);
            out.insert("key".into(), Json::String(r.key.clone()));
            put(
                &mut out,
                "filter",
                r.filter.as_ref().map(json::filter_json).transpose()?,
            );
            put(&mut out, "limit", r.limit.map(Json::from));
            put(&mut out, "exact", r.exact.map(Json::from));
            let body = parse(&Json::Object(out))?;
            let v = rest_result(
                rest::facet(
                    State(self.0.clone()),
                    Path(r.collection_name),
                    Params(read_params(r.timeout)?),
                    Body(body),
                )
                .await,
            )
            .await?;
            let hits = v["hits"]
                .as_array()
                .map(|hits| {
                    hits.iter()
                        .map(|h| pb::FacetHit {
                            value: facet_value(&h["value"]),
                            count: h["count"].as_u64().unwrap_or(0),
                        })
                        .collect()
                })
                .unwrap_or_default();
            Ok(Response::new(pb::FacetResponse {
                hits,
                time: seconds(start),
                usage: None,
            }))
        })
        .await
    }

    async fn search_matrix_pairs(
        &self,
        request: Request<pb::SearchMatrixPoints>,
    ) -> Result<Response<pb::SearchMatrixPairsResponse>, Status> {
        let (level, timeout) = (
            request.get_ref().read_consistency,
            request.get_ref().timeout,
        );
        consistent(&self.0, level, timeout, async move {
            let start = Instant::now();
            let r = request.into_inner();
            let (name, params, body) = matrix_request(&r)?;
            let v = rest_result(
                crate::api::matrix::pairs(
                    State(self.0.clone()),
                    Path(name),
                    Params(params),
                    Body(body),
                )
                .await,
            )
            .await?;
            let pairs = v["pairs"]
                .as_array()
                .map(|pairs| {
                    pairs
                        .iter()
                        .map(|p| pb::SearchMatrixPair {
                            a: json::answer_id(&p["a"]),
                            b: json::answer_id(&p["b"]),
                            score: p["score"].as_f64().unwrap_or(0.0) as f32,
                        })
                        .collect()
                })
                .unwrap_or_default();
            Ok(Response::new(pb::SearchMatrixPairsResponse {
                result: Some(pb::SearchMatrixPairs { pairs }),
                time: seconds(start),
                usage: None,
            }))
        })
        .await
    }

    async fn search_matrix_offsets(
        &self,
        request: Request<pb::SearchMatrixPoints>,
    ) -> Result<Response<pb::SearchMatrixOffsetsResponse>, Status> {
        let (level, timeout) = (
            request.get_ref().read_consistency,
            request.get_ref().timeout,
        );
        consistent(&self.0, level, timeout, async move {
            let start = Instant::now();
            let r = request.into_inner();
            let (name, params, body) = matrix_request(&r)?;
            let v = rest_result(
                crate::api::matrix::offsets(
                    State(self.0.clone()),
                    Path(name),
                    Params(params),
                    Body(body),
                )
                .await,
            )
            .await?;
            let numbers =
                |key: &str| -> Vec<Json> { v[key].as_array().cloned().unwrap_or_default() };
            Ok(Response::new(pb::SearchMatrixOffsetsResponse {
                result: Some(pb::SearchMatrixOffsets {
                    offsets_row: numbers("offsets_row")
                        .iter()
                        .filter_map(Json::as_u64)
                        .collect(),
                    offsets_col: numbers("offsets_col")
                        .iter()
                        .filter_map(Json::as_u64)
                        .collect(),
                    // A score JSON could not carry (null) stays in its place.
                    scores: numbers("scores")
                        .iter()
                        .map(|x| x.as_f64().unwrap_or(f64::NAN) as f32)
                        .collect(),
                    ids: numbers("ids").iter().filter_map(json::answer_id).collect(),
                }),
                time: seconds(start),
                usage: None,
            }))
        })
        .await
    }
}

fn set_payload_body(r: &pb::SetPayloadPoints) -> Result<Json, ApiError> {
    let shard_key = shard_key_json(&r.shard_key_selector)?;
    let mut out = Map::new();
    put(&mut out, "shard_key", shard_key);
    out.insert("payload".into(), Json::Object(json::map_json(&r.payload)));
    put(&mut out, "key", r.key.clone().map(Json::String));
    with_selector(out, r.points_selector.as_ref(), "points_selector")
}

/// One operation of an update batch as REST's (`{"upsert": ...}`, `{"delete": ...}`, ...).
#[allow(deprecated)] // the deprecated delete and clear forms are what older clients send
fn batch_operation_json(op: &pb::PointsUpdateOperation, at: &str) -> Result<Json, ApiError> {
    use pb::points_update_operation::Operation as O;
    let selector = |s: Option<&pb::PointsSelector>| json::selector_json(s, &format!("{at}.points"));
    Ok(match &op.operation {
        None => return Err(invalid(format!("{at}: an operation without a kind"))),
        Some(O::Upsert(u)) => {
            let shard_key = shard_key_json(&u.shard_key_selector)?;
            let points = u
                .points
                .iter()
                .enumerate()
                .map(|(i, p)| point_json(i, p))
                .collect::<Result<Vec<_>, _>>()?;
            let mut out = Map::new();
            put(&mut out, "shard_key", shard_key);
            out.insert("points".into(), Json::Array(points));
            put(
                &mut out,
                "update_filter",
                u.update_filter
                    .as_ref()
                    .map(json::filter_json)
                    .transpose()?,
            );
            put(&mut out, "update_mode", update_mode_json(u.update_mode)?);
            json!({ "upsert": out })
        }
        Some(O::DeleteDeprecated(sel)) => json!({ "delete": selector(Some(sel))? }),
        Some(O::DeletePoints(d)) => {
            json!({ "delete": keyed(selector(d.points.as_ref())?, &d.shard_key_selector)? })
        }
        Some(O::SetPayload(p)) => {
            json!({ "set_payload": keyed(payload_op(&p.payload, p.key.as_ref(), p.points_selector.as_ref(), at)?, &p.shard_key_selector)? })
        }
        Some(O::OverwritePayload(p)) => {
            json!({ "overwrite_payload": keyed(payload_op(&p.payload, p.key.as_ref(), p.points_selector.as_ref(), at)?, &p.shard_key_selector)? })
        }
        Some(O::DeletePayload(d)) => {
            let shard_key = shard_key_json(&d.shard_key_selector)?;
            let mut out = Map::new();
            put(&mut out, "shard_key", shard_key);
            out.insert("keys".into(), json!(d.keys));
            json!({ "delete_payload": with_selector(out, d.points_selector.as_ref(), &format!("{at}.points_selector"))? })
        }
        Some(O::ClearPayloadDeprecated(sel)) => json!({ "clear_payload": selector(Some(sel))? }),
        Some(O::ClearPayload(c)) => {
            json!({ "clear_payload": keyed(selector(c.points.as_ref())?, &c.shard_key_selector)? })
        }
        Some(O::UpdateVectors(u)) => {
            let shard_key = shard_key_json(&u.shard_key_selector)?;
            let points = point_vectors_json(&u.points)?;
            let mut out = Map::new();
            put(&mut out, "shard_key", shard_key);
            out.insert("points".into(), Json::Array(points));
            put(
                &mut out,
                "update_filter",
                u.update_filter
                    .as_ref()
                    .map(json::filter_json)
                    .transpose()?,
            );
            json!({ "update_vectors": out })
        }
        Some(O::DeleteVectors(d)) => {
            let shard_key = shard_key_json(&d.shard_key_selector)?;
            let mut out = Map::new();
            put(&mut out, "shard_key", shard_key);
            let names = d
                .vectors
                .as_ref()
                .map(|v| v.names.clone())
                .unwrap_or_default();
            out.insert("vector".into(), json!(names));
            json!({ "delete_vectors": with_selector(out, d.points_selector.as_ref(), &format!("{at}.points_selector"))? })
        }
    })
}

fn payload_op(
    payload: &std::collections::HashMap<String, pb::Value>,
    key: Option<&String>,
    selector: Option<&pb::PointsSelector>,
    at: &str,
) -> Result<Json, ApiError> {
    let mut out = Map::new();
    out.insert("payload".into(), Json::Object(json::map_json(payload)));
    put(&mut out, "key", key.cloned().map(Json::String));
    with_selector(out, selector, &format!("{at}.points_selector"))
}

/// `PointVectors` (an id and the vectors to set) as REST's.
fn point_vectors_json(points: &[pb::PointVectors]) -> Result<Vec<Json>, ApiError> {
    points
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
        .collect()
}

/// A facet value of a REST answer as gRPC's.
fn facet_value(v: &Json) -> Option<pb::FacetValue> {
    use pb::facet_value::Variant;
    let variant = match v {
        Json::String(s) => Variant::StringValue(s.clone()),
        Json::Bool(b) => Variant::BoolValue(*b),
        Json::Number(n) => Variant::IntegerValue(n.as_i64()?),
        _ => return None,
    };
    Some(pb::FacetValue {
        variant: Some(variant),
    })
}

/// `group_by`, `group_size` and `with_lookup` of a grouped request, as REST's.
fn group_fields(
    out: &mut Map<String, Json>,
    group_by: &str,
    group_size: Option<u64>,
    lookup: Option<&pb::WithLookup>,
) {
    out.insert("group_by".into(), Json::String(group_by.to_string()));
    put(out, "group_size", group_size.map(Json::from));
    if let Some(l) = lookup {
        let mut o = Map::new();
        o.insert("collection".into(), Json::String(l.collection.clone()));
        put(
            &mut o,
            "with_payload",
            l.with_payload.as_ref().map(json::with_payload_json),
        );
        put(
            &mut o,
            "with_vectors",
            l.with_vectors.as_ref().map(json::with_vectors_json),
        );
        out.insert("with_lookup".into(), Json::Object(o));
    }
}

/// Runs a REST grouped search (`endpoint`) on collection `name` with body `out`; its groups
/// as gRPC's.
async fn groups<F, Fut>(
    state: &Arc<AppState>,
    name: String,
    timeout: Option<u64>,
    out: Map<String, Json>,
    endpoint: F,
) -> Result<pb::GroupsResult, ApiError>
where
    F: FnOnce(
        State<Arc<AppState>>,
        Path<String>,
        Params<model::ReadParams>,
        axum::body::Bytes,
    ) -> Fut,
    Fut: std::future::Future<Output = crate::api::ApiResult>,
{
    let answer = endpoint(
        State(state.clone()),
        Path(name),
        Params(read_params(timeout)?),
        body(&Json::Object(out)).into(),
    )
    .await;
    groups_pb(&rest_result(answer).await?)
}

/// REST's `{"groups": [...]}` as gRPC's `GroupsResult`.
fn groups_pb(v: &Json) -> Result<pb::GroupsResult, ApiError> {
    let groups = v["groups"].as_array().cloned().unwrap_or_default();
    let groups = groups
        .iter()
        .map(|g| {
            use pb::group_id::Kind;
            let id = match &g["id"] {
                Json::String(s) => Some(Kind::StringValue(s.clone())),
                Json::Number(n) => match n.as_u64() {
                    Some(u) => Some(Kind::UnsignedValue(u)),
                    None => n.as_i64().map(Kind::IntegerValue),
                },
                _ => None,
            };
            Ok(pb::PointGroup {
                id: id.map(|kind| pb::GroupId { kind: Some(kind) }),
                hits: json::scored_points_json(&g["hits"])?,
                lookup: g.get("lookup").and_then(json::record_json),
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    Ok(pb::GroupsResult { groups })
}

fn matrix_request(
    r: &pb::SearchMatrixPoints,
) -> Result<(String, model::ReadParams, model::SearchMatrixRequest), ApiError> {
    let shard_key = shard_key_json(&r.shard_key_selector)?;
    let mut out = Map::new();
    put(&mut out, "shard_key", shard_key);
    put(
        &mut out,
        "filter",
        r.filter.as_ref().map(json::filter_json).transpose()?,
    );
    put(&mut out, "sample", r.sample.map(Json::from));
    put(&mut out, "limit", r.limit.map(Json::from));
    put(&mut out, "using", r.using.clone().map(Json::String));
    Ok((
        r.collection_name.clone(),
        read_params(r.timeout)?,
        parse(&Json::Object(out))?,
    ))
}

/// A `VectorExample` (an id or a vector) as REST's vector input; `field` names it.
fn example_json(e: Option<&pb::VectorExample>, field: &str) -> Result<Json, ApiError> {
    use pb::vector_example::Example;
    match e.and_then(|e| e.example.as_ref()) {
        Some(Example::Id(id)) => json::id_json(id, field),
        Some(Example::Vector(v)) => json::vector_json(v, field),
        None => Err(invalid(format!("{field}: an id or a vector is required"))),
    }
}

/// `DiscoverPoints` (the legacy discovery) as REST's `DiscoverRequest`.
fn discover_json(r: &pb::DiscoverPoints) -> Result<Json, ApiError> {
    use pb::target_vector::Target;
    let mut out = Map::new();
    put(
        &mut out,
        "shard_key",
        shard_key_json(&r.shard_key_selector)?,
    );
    if let Some(t) = &r.target {
        let Some(Target::Single(example)) = &t.target else {
            return Err(invalid("target: an example is required"));
        };
        out.insert("target".into(), example_json(Some(example), "target")?);
    }
    let context = r
        .context
        .iter()
        .enumerate()
        .map(|(i, pair)| {
            Ok(json!({
                "positive": example_json(pair.positive.as_ref(), &format!("context[{i}].positive"))?,
                "negative": example_json(pair.negative.as_ref(), &format!("context[{i}].negative"))?,
            }))
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    out.insert("context".into(), Json::Array(context));
    out.insert("limit".into(), json!(r.limit));
    put(&mut out, "offset", r.offset.map(Json::from));
    put(
        &mut out,
        "filter",
        r.filter.as_ref().map(json::filter_json).transpose()?,
    );
    put(
        &mut out,
        "params",
        r.params
            .as_ref()
            .map(json::search_params_json)
            .transpose()?,
    );
    put(&mut out, "using", r.using.clone().map(Json::String));
    put(
        &mut out,
        "lookup_from",
        r.lookup_from.as_ref().map(json::lookup_json).transpose()?,
    );
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
    Ok(Json::Object(out))
}

/// `RecommendPoints` (the legacy recommendation) as REST's `RecommendRequest`.
fn recommend_json(r: &pb::RecommendPoints) -> Result<Json, ApiError> {
    let shard_key = shard_key_json(&r.shard_key_selector)?;
    let examples = |ids: &[pb::PointId], vectors: &[pb::Vector], side: &str| {
        let mut out = ids
            .iter()
            .enumerate()
            .map(|(i, id)| json::id_json(id, &format!("{side}[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        for (i, v) in vectors.iter().enumerate() {
            out.push(json::vector_json(v, &format!("{side}_vectors[{i}]"))?);
        }
        Ok::<_, ApiError>(Json::Array(out))
    };
    let mut out = Map::new();
    put(&mut out, "shard_key", shard_key);
    out.insert(
        "positive".into(),
        examples(&r.positive, &r.positive_vectors, "positive")?,
    );
    out.insert(
        "negative".into(),
        examples(&r.negative, &r.negative_vectors, "negative")?,
    );
    match r.strategy {
        None => {}
        Some(0) => {
            out.insert("strategy".into(), json!("average_vector"));
        }
        Some(1) => {
            out.insert("strategy".into(), json!("best_score"));
        }
        Some(2) => {
            out.insert("strategy".into(), json!("sum_scores"));
        }
        Some(other) => return Err(invalid(format!("strategy {other} is unknown"))),
    }
    out.insert("limit".into(), json!(r.limit));
    put(&mut out, "offset", r.offset.map(Json::from));
    put(
        &mut out,
        "filter",
        r.filter.as_ref().map(json::filter_json).transpose()?,
    );
    put(
        &mut out,
        "params",
        r.params
            .as_ref()
            .map(json::search_params_json)
            .transpose()?,
    );
    put(&mut out, "score_threshold", threshold(r.score_threshold)?);
    put(&mut out, "using", r.using.clone().map(Json::String));
    put(
        &mut out,
        "lookup_from",
        r.lookup_from.as_ref().map(json::lookup_json).transpose()?,
    );
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
    Ok(Json::Object(out))
}
