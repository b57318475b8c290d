//! Vector inputs, ids, filters and selectors: the polymorphic parts of Qdrant's JSON, read
//! straight from the body into their typed form.
//!
//! These are hand-written `Deserialize`s rather than `#[serde(untagged)]` enums: an untagged
//! enum buffers its input into serde's private `Content` tree and tries each variant in turn,
//! which would copy every float of a query or an upsert once more, lose the JSON path of a bad
//! field, and answer "did not match any variant". A visitor here looks at the first token (a
//! number, a list, an object, a string) and reads the variant it announces, so a dense vector
//! goes from the body's digits to `f32`s with nothing in between, and an error names its
//! place (`points[3].vector[7]`) through `serde_path_to_error`.

use index_core::PointId;
use payload::{Filter, PayloadSelector};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;
use std::fmt;
use std::sync::Arc;
use storage::MAX_VECTOR_SIZE;

/// A point id: an unsigned integer or a UUID string (Qdrant's `ExtendedPointId`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtendedPointId(pub PointId);

impl<'de> Deserialize<'de> for ExtendedPointId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ExtendedPointId;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a point id: an unsigned integer or a UUID string")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
                Ok(ExtendedPointId(PointId::Num(n)))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Self::Value, E> {
                u64::try_from(n)
                    .map(|n| ExtendedPointId(PointId::Num(n)))
                    .map_err(|_| E::custom(format!("{n} is not a valid point id (negative)")))
            }
            fn visit_f64<E: de::Error>(self, x: f64) -> Result<Self::Value, E> {
                Err(E::custom(format!(
                    "{x} is not a valid point id (an unsigned integer or a UUID)"
                )))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                payload::point_id_from_str(s)
                    .map(ExtendedPointId)
                    .ok_or_else(|| E::custom(format!("`{s}` is not a valid point id (a UUID)")))
            }
        }
        d.deserialize_any(V)
    }
}

/// One 32-bit float of a vector: a JSON number that fits an `f32` and is finite.
struct Element(f32);

impl<'de> Deserialize<'de> for Element {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ElementVisitor)
    }
}

struct ElementVisitor;

impl Visitor<'_> for ElementVisitor {
    type Value = Element;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number")
    }
    fn visit_f64<E: de::Error>(self, x: f64) -> Result<Element, E> {
        let v = x as f32;
        if v.is_finite() {
            Ok(Element(v))
        } else {
            Err(E::custom(format!("{x} is not a finite 32-bit number")))
        }
    }
    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Element, E> {
        self.visit_f64(n as f64)
    }
    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Element, E> {
        self.visit_f64(n as f64)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Element, E> {
        // serde_json writes NaN and infinities as null: say so, since that is how they get here.
        Err(E::custom(
            "null is not a vector value (NaN or infinity is not a valid vector value)",
        ))
    }
}

/// Reads the rest of a list of numbers into `out` (capacity-bounded).
fn read_floats<'de, A: SeqAccess<'de>>(seq: &mut A, out: &mut Vec<f32>) -> Result<(), A::Error> {
    while let Some(Element(x)) = seq.next_element()? {
        if out.len() == MAX_VECTOR_SIZE {
            return Err(de::Error::custom(format!(
                "a vector has at most {MAX_VECTOR_SIZE} values"
            )));
        }
        out.push(x);
    }
    Ok(())
}

/// A dense vector, read number by number.
#[derive(Debug, Clone, PartialEq)]
pub struct DenseVector(pub Vec<f32>);

impl<'de> Deserialize<'de> for DenseVector {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = DenseVector;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of numbers")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<DenseVector, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(64).min(4096));
                read_floats(&mut seq, &mut out)?;
                Ok(DenseVector(out))
            }
        }
        d.deserialize_seq(V)
    }
}

/// A sparse vector (`{"indices": [...], "values": [...]}`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SparseVector {
    /// Dimensions with a value.
    pub indices: Vec<u32>,
    /// Their values.
    pub values: Vec<f32>,
}

/// What Qdrant accepts where a vector goes (`VectorInput`, and `Vector` in a point): every
/// shape is read, so the conversion can say which ones this server serves.
#[derive(Debug, Clone, PartialEq)]
pub enum VectorInput {
    /// A list of numbers.
    Dense(Vec<f32>),
    /// A list of lists of numbers.
    Multi(Vec<Vec<f32>>),
    /// Indices and values.
    Sparse(SparseVector),
    /// A stored point's vector, by id (queries only).
    Id(PointId),
    /// A document, image or object for server-side inference (`text`, `image`, `object`).
    Inference(&'static str),
}

impl<'de> Deserialize<'de> for VectorInput {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(VectorInputVisitor)
    }
}

struct VectorInputVisitor;

/// The first element of a list decides between a dense vector and a multivector.
enum FirstElement {
    Number(f32),
    Row(Vec<f32>),
}

impl<'de> Deserialize<'de> for FirstElement {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = FirstElement;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number or a list of numbers")
            }
            fn visit_f64<E: de::Error>(self, x: f64) -> Result<FirstElement, E> {
                ElementVisitor
                    .visit_f64(x)
                    .map(|e| FirstElement::Number(e.0))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<FirstElement, E> {
                self.visit_f64(n as f64)
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<FirstElement, E> {
                self.visit_f64(n as f64)
            }
            fn visit_unit<E: de::Error>(self) -> Result<FirstElement, E> {
                ElementVisitor
                    .visit_unit()
                    .map(|e| FirstElement::Number(e.0))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<FirstElement, A::Error> {
                let mut row = Vec::new();
                read_floats(&mut seq, &mut row)?;
                Ok(FirstElement::Row(row))
            }
        }
        d.deserialize_any(V)
    }
}

/// The keys of an inference object other than a document's `text` (`Image`,
/// `InferenceObject`).
const INFERENCE_KEYS: &[(&str, &str)] = &[("image", "image"), ("object", "inference object")];

impl<'de> Visitor<'de> for VectorInputVisitor {
    type Value = VectorInput;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a vector (a list of numbers), a multivector, a sparse vector or a point id")
    }
    fn visit_u64<E: de::Error>(self, n: u64) -> Result<VectorInput, E> {
        Ok(VectorInput::Id(PointId::Num(n)))
    }
    fn visit_i64<E: de::Error>(self, n: i64) -> Result<VectorInput, E> {
        ExtendedPointId::deserialize(de::value::I64Deserializer::<E>::new(n))
            .map(|id| VectorInput::Id(id.0))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<VectorInput, E> {
        ExtendedPointId::deserialize(de::value::StrDeserializer::<E>::new(s))
            .map(|id| VectorInput::Id(id.0))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<VectorInput, A::Error> {
        match seq.next_element::<FirstElement>()? {
            None => Ok(VectorInput::Dense(Vec::new())),
            Some(FirstElement::Number(x)) => {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(64).min(4096) + 1);
                out.push(x);
                read_floats(&mut seq, &mut out)?;
                Ok(VectorInput::Dense(out))
            }
            Some(FirstElement::Row(first)) => {
                let mut rows = vec![first];
                while let Some(DenseVector(row)) = seq.next_element()? {
                    if rows.len() == MAX_VECTOR_SIZE {
                        return Err(de::Error::custom(format!(
                            "a multivector has at most {MAX_VECTOR_SIZE} vectors"
                        )));
                    }
                    rows.push(row);
                }
                Ok(VectorInput::Multi(rows))
            }
        }
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<VectorInput, A::Error> {
        let mut indices = None;
        let mut values = None;
        let mut inference = None;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "indices" => indices = Some(map.next_value::<Vec<u32>>()?),
                "values" => values = Some(map.next_value::<Vec<f32>>()?),
                // A document's text is a string: `{"text": [..]}` is no query at all (400),
                // a document is one this server does not serve (501).
                "text" => {
                    map.next_value::<String>()?;
                    inference = Some("document");
                }
                k => match INFERENCE_KEYS.iter().find(|(name, _)| *name == k) {
                    Some((_, kind)) => {
                        map.next_value::<IgnoredAny>()?;
                        inference = Some(*kind);
                    }
                    // The other fields of an inference object (`model`, `options`, ...).
                    None if inference.is_some() || matches!(k, "model" | "options" | "bm25") => {
                        map.next_value::<IgnoredAny>()?;
                    }
                    None => {
                        return Err(de::Error::custom(format!(
                            "unknown field `{k}`: a vector object is a sparse vector \
                             (indices, values) or a document, image or object"
                        )))
                    }
                },
            }
        }
        if let Some(kind) = inference {
            return Ok(VectorInput::Inference(kind));
        }
        match (indices, values) {
            (Some(indices), Some(values)) => {
                Ok(VectorInput::Sparse(SparseVector { indices, values }))
            }
            (None, _) => Err(de::Error::missing_field("indices")),
            (_, None) => Err(de::Error::missing_field("values")),
        }
    }
}

/// A point's vectors (`VectorStruct`): one unnamed vector, or named ones.
#[derive(Debug, Clone, PartialEq)]
pub enum VectorStruct {
    /// The unnamed vector.
    Single(VectorInput),
    /// Named vectors, in the order sent.
    Named(Vec<(String, VectorInput)>),
}

impl<'de> Deserialize<'de> for VectorStruct {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = VectorStruct;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of numbers or a map of named vectors")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<VectorStruct, A::Error> {
                VectorInputVisitor.visit_seq(seq).map(VectorStruct::Single)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<VectorStruct, A::Error> {
                let mut out = Vec::new();
                while let Some(name) = map.next_key::<String>()? {
                    if out.len() == storage::MAX_NAMED_VECTORS {
                        return Err(de::Error::custom(format!(
                            "at most {} named vectors",
                            storage::MAX_NAMED_VECTORS
                        )));
                    }
                    let v = map.next_value::<VectorInput>()?;
                    if matches!(v, VectorInput::Id(_)) {
                        return Err(de::Error::custom(format!(
                            "vector `{name}` must be a vector, not a point id"
                        )));
                    }
                    out.push((name, v));
                }
                Ok(VectorStruct::Named(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// The vectors of a batch upsert (`BatchVectorStruct`): a list of unnamed vectors, or for
/// each name a list of vectors.
#[derive(Debug, Clone, PartialEq)]
pub enum BatchVectorStruct {
    /// One unnamed vector per point.
    Single(Vec<VectorInput>),
    /// Per name, one vector per point.
    Named(Vec<(String, Vec<VectorInput>)>),
}

impl<'de> Deserialize<'de> for BatchVectorStruct {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = BatchVectorStruct;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of vectors or a map of named lists of vectors")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(v) = seq.next_element::<VectorInput>()? {
                    out.push(v);
                }
                Ok(BatchVectorStruct::Single(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(name) = map.next_key::<String>()? {
                    if out.len() == storage::MAX_NAMED_VECTORS {
                        return Err(de::Error::custom(format!(
                            "at most {} named vectors",
                            storage::MAX_NAMED_VECTORS
                        )));
                    }
                    out.push((name, map.next_value::<Vec<VectorInput>>()?));
                }
                Ok(BatchVectorStruct::Named(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// The `vector` of the legacy search (`NamedVectorStruct`): a list, `{name, vector}` with a
/// dense vector, or `{name, vector}` with a sparse one.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedVectorStruct {
    /// `""` for the unnamed vector.
    pub name: String,
    /// The vector.
    pub vector: VectorInput,
}

impl<'de> Deserialize<'de> for NamedVectorStruct {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = NamedVectorStruct;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of numbers or {name, vector}")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                Ok(NamedVectorStruct {
                    name: String::new(),
                    vector: VectorInputVisitor.visit_seq(seq)?,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let (mut name, mut vector) = (None, None);
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "name" => name = map.next_value::<Option<String>>()?,
                        "vector" => vector = Some(map.next_value::<VectorInput>()?),
                        other => return Err(de::Error::unknown_field(other, &["name", "vector"])),
                    }
                }
                let vector = vector.ok_or_else(|| de::Error::missing_field("vector"))?;
                if matches!(vector, VectorInput::Id(_) | VectorInput::Inference(_)) {
                    return Err(de::Error::custom(
                        "vector must be a list of numbers or a sparse vector",
                    ));
                }
                // No name: the unnamed vector, as the list form.
                Ok(NamedVectorStruct {
                    name: name.unwrap_or_default(),
                    vector,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// The kinds of Qdrant's `Query` other than `nearest` (openapi `components/schemas/Query`).
pub const QUERY_KINDS: &[&str] = &[
    "recommend",
    "discover",
    "context",
    "order_by",
    "fusion",
    "rrf",
    "formula",
    "sample",
    "relevance_feedback",
];

/// The `query` of a universal query (`QueryInterface`).
#[derive(Debug, Clone, PartialEq)]
pub enum QueryInterface {
    /// Nearest neighbours of a vector or of a stored point (`[..]`, `id`,
    /// `{"nearest": ..}`); `mmr` set when diversity was asked for.
    Nearest {
        /// The vector.
        nearest: VectorInput,
        /// Diversity asked for (`{"nearest": .., "mmr": {..}}`).
        mmr: Option<Mmr>,
    },
    /// More like the positives, less like the negatives.
    Recommend(RecommendInput),
    /// Nearest to a target within the zone context pairs allow.
    Discover(DiscoverInput),
    /// The zone context pairs allow.
    Context(ContextInput),
    /// Points in the order of a payload value.
    OrderBy(super::OrderByInput),
    /// The prefetches' answers fused (`{"fusion": "rrf" | "dbsf"}`).
    Fusion(Fusion),
    /// Reciprocal rank fusion with parameters (`{"rrf": {"k": .., "weights": [..]}}`).
    Rrf(Rrf),
    /// Points drawn at random (`{"sample": "random"}`).
    Sample(Sample),
    /// The prefetched points re-scored by an expression (`{"formula": .., "defaults": ..}`),
    /// read by `api::formula`.
    Formula {
        /// The expression.
        formula: Value,
        /// Values for variables a point lacks.
        defaults: Option<Value>,
    },
    /// One of [`QUERY_KINDS`] not served.
    Other(&'static str),
}

/// `Mmr`: re-rank the nearest candidates for diversity (maximal marginal relevance).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mmr {
    /// 0 ranks by relevance alone, 1 by dissimilarity to what was picked alone (0.5).
    pub diversity: Option<f64>,
    /// How many nearest points are re-ranked (the query's limit).
    pub candidates_limit: Option<u64>,
}

/// `Fusion`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fusion {
    /// Reciprocal rank fusion, with its default constant.
    Rrf,
    /// Distribution-based score fusion: each list's scores normalised by their mean and
    /// three standard deviations, then summed.
    Dbsf,
}

/// `Rrf`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rrf {
    /// The ranking constant (2).
    pub k: Option<u64>,
    /// One weight per prefetch (all 1).
    pub weights: Option<Vec<f64>>,
}

/// `Sample`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sample {
    /// Uniformly at random.
    Random,
}

/// `RecommendInput`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecommendInput {
    /// Examples to be near.
    pub positive: Option<Vec<VectorInput>>,
    /// Examples to be far from.
    pub negative: Option<Vec<VectorInput>>,
    /// How they combine (default `average_vector`).
    pub strategy: Option<RecommendStrategy>,
}

/// `RecommendStrategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecommendStrategy {
    /// A nearest search for `avg(positive) + avg(positive) - avg(negative)`.
    AverageVector,
    /// The best similarity to a positive against that to a negative.
    BestScore,
    /// Similarities to the positives summed, to the negatives subtracted.
    SumScores,
}

/// `ContextPair` (and the legacy `ContextExamplePair`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContextPair {
    /// The side to be near.
    pub positive: VectorInput,
    /// The side to be far from.
    pub negative: VectorInput,
}

/// `ContextInput`: one pair, a list of pairs, or `null` (none).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ContextInput(pub Vec<ContextPair>);

impl<'de> Deserialize<'de> for ContextInput {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            Many(Vec<ContextPair>),
            One(ContextPair),
        }
        Ok(
            match Option::<OneOrMany>::deserialize(d).map_err(|_| {
                de::Error::custom("context must be a pair {positive, negative} or a list of pairs")
            })? {
                None => ContextInput::default(),
                Some(OneOrMany::Many(pairs)) => ContextInput(pairs),
                Some(OneOrMany::One(pair)) => ContextInput(vec![pair]),
            },
        )
    }
}

/// `DiscoverInput`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoverInput {
    /// What to be near.
    pub target: VectorInput,
    /// The constraints.
    #[serde(default)]
    pub context: ContextInput,
}

impl<'de> Deserialize<'de> for QueryInterface {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = QueryInterface;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a vector, a point id or a query object")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
                VectorInputVisitor.visit_u64(n).map(nearest)
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Self::Value, E> {
                VectorInputVisitor.visit_i64(n).map(nearest)
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                VectorInputVisitor.visit_str(s).map(nearest)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                VectorInputVisitor.visit_seq(seq).map(nearest)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                // The first key says what the object is: a query kind, or a vector input
                // (sparse or inference) given directly.
                let Some(first) = map.next_key::<String>()? else {
                    return Err(de::Error::custom("an empty object is not a query"));
                };
                match first.as_str() {
                    "nearest" | "mmr" => {
                        let mut nearest = None;
                        let mut mmr = None;
                        let mut key = Some(first);
                        while let Some(k) = key {
                            match k.as_str() {
                                "nearest" => nearest = Some(map.next_value::<VectorInput>()?),
                                // `null` is absent, as everywhere in a body.
                                "mmr" => mmr = map.next_value::<Option<Mmr>>()?,
                                other => {
                                    return Err(de::Error::unknown_field(
                                        other,
                                        &["nearest", "mmr"],
                                    ))
                                }
                            }
                            key = map.next_key::<String>()?;
                        }
                        let nearest = nearest.ok_or_else(|| de::Error::missing_field("nearest"))?;
                        Ok(QueryInterface::Nearest { nearest, mmr })
                    }
                    "recommend" | "discover" | "context" | "order_by" | "fusion" | "rrf"
                    | "sample" => {
                        let query = match first.as_str() {
                            "recommend" => QueryInterface::Recommend(map.next_value()?),
                            "discover" => QueryInterface::Discover(map.next_value()?),
                            "order_by" => QueryInterface::OrderBy(map.next_value()?),
                            "fusion" => QueryInterface::Fusion(map.next_value()?),
                            "rrf" => QueryInterface::Rrf(map.next_value()?),
                            "sample" => QueryInterface::Sample(map.next_value()?),
                            _ => QueryInterface::Context(map.next_value()?),
                        };
                        if let Some(k) = map.next_key::<String>()? {
                            return Err(de::Error::custom(format!(
                                "a `{first}` query object has one key; `{k}` is not expected"
                            )));
                        }
                        Ok(query)
                    }
                    "formula" | "defaults" => {
                        // Two keys, in either order.
                        let (mut formula, mut defaults) = (None, None);
                        let mut key = Some(first);
                        while let Some(k) = key {
                            match k.as_str() {
                                "formula" => formula = Some(map.next_value::<Value>()?),
                                "defaults" => defaults = map.next_value::<Option<Value>>()?,
                                other => {
                                    return Err(de::Error::unknown_field(
                                        other,
                                        &["formula", "defaults"],
                                    ))
                                }
                            }
                            key = map.next_key::<String>()?;
                        }
                        let formula = formula.ok_or_else(|| de::Error::missing_field("formula"))?;
                        Ok(QueryInterface::Formula { formula, defaults })
                    }
                    kind => {
                        if let Some(k) = QUERY_KINDS.iter().find(|k| **k == kind) {
                            map.next_value::<IgnoredAny>()?;
                            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                            return Ok(QueryInterface::Other(k));
                        }
                        // A sparse vector or an inference object: finish it as a vector input.
                        let rest = FirstKeyMap {
                            first: Some(first),
                            map,
                        };
                        VectorInputVisitor
                            .visit_map(rest)
                            .map(nearest)
                            .map_err(|e: A::Error| {
                                de::Error::custom(format!(
                                    "{e}; a query object is one of nearest, {}",
                                    QUERY_KINDS.join(", ")
                                ))
                            })
                    }
                }
            }
        }
        d.deserialize_any(V)
    }
}

fn nearest(v: VectorInput) -> QueryInterface {
    QueryInterface::Nearest {
        nearest: v,
        mmr: None,
    }
}

/// A map whose first key was already read: hands it out again, then the rest.
struct FirstKeyMap<A> {
    first: Option<String>,
    map: A,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for FirstKeyMap<A> {
    type Error = A::Error;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        match self.first.take() {
            Some(k) => seed
                .deserialize(de::value::StringDeserializer::<A::Error>::new(k))
                .map(Some),
            None => self.map.next_key_seed(seed),
        }
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.map.next_value_seed(seed)
    }
}

/// A payload filter, parsed by `payload`'s filter parser (which names the bad condition).
#[derive(Debug, Clone)]
pub struct FilterInput(pub Arc<Filter>);

impl<'de> Deserialize<'de> for FilterInput {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Filters are small trees: reading one as JSON first and handing it to the one
        // parser of the filter language costs little and keeps that parser the only one.
        let v = Value::deserialize(d)?;
        Filter::from_json(&v)
            .map(|f| FilterInput(Arc::new(f)))
            .map_err(de::Error::custom)
    }
}

/// `with_payload` (`WithPayloadInterface`), parsed by `payload`'s selector parser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WithPayload(pub PayloadSelector);

impl<'de> Deserialize<'de> for WithPayload {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        PayloadSelector::from_json(&v)
            .map(WithPayload)
            .map_err(de::Error::custom)
    }
}

/// `with_vector` (`WithVector`): a boolean or a list of vector names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WithVector {
    /// `true` or `false`.
    Bool(bool),
    /// Only these named vectors.
    Names(Vec<String>),
}

impl<'de> Deserialize<'de> for WithVector {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = WithVector;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a boolean or a list of vector names")
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<WithVector, E> {
                Ok(WithVector::Bool(b))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<WithVector, A::Error> {
                let mut names = Vec::new();
                while let Some(n) = seq.next_element::<String>()? {
                    if names.len() == storage::MAX_NAMED_VECTORS {
                        return Err(de::Error::custom("too many vector names"));
                    }
                    names.push(n);
                }
                Ok(WithVector::Names(names))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{parse, QueryRequest};

    fn query(body: &str) -> Result<QueryInterface, String> {
        parse::<QueryRequest>(body.as_bytes())
            .map(|q| q.query.expect("a query"))
            .map_err(|e| e.message)
    }

    #[test]
    fn every_vector_shape_reads_as_its_variant() {
        let dense = query(r#"{"query": [1, -2.5, 3e-3]}"#).unwrap();
        assert_eq!(
            dense,
            QueryInterface::Nearest {
                nearest: VectorInput::Dense(vec![1.0, -2.5, 0.003]),
                mmr: None
            }
        );
        let multi = query(r#"{"query": [[1, 2], [3, 4]]}"#).unwrap();
        assert_eq!(
            multi,
            QueryInterface::Nearest {
                nearest: VectorInput::Multi(vec![vec![1.0, 2.0], vec![3.0, 4.0]]),
                mmr: None
            }
        );
        let sparse = query(r#"{"query": {"values": [0.5], "indices": [7]}}"#).unwrap();
        assert_eq!(
            sparse,
            QueryInterface::Nearest {
                nearest: VectorInput::Sparse(SparseVector {
                    indices: vec![7],
                    values: vec![0.5]
                }),
                mmr: None
            }
        );
        let by_id =
            query(r#"{"query": {"nearest": "550e8400-e29b-41d4-a716-446655440000", "mmr": {}}}"#)
                .unwrap();
        assert!(matches!(
            by_id,
            QueryInterface::Nearest {
                nearest: VectorInput::Id(PointId::Uuid(_)),
                mmr: Some(Mmr {
                    diversity: None,
                    candidates_limit: None
                })
            }
        ));
        assert_eq!(
            query(r#"{"query": 17}"#).unwrap(),
            QueryInterface::Nearest {
                nearest: VectorInput::Id(PointId::Num(17)),
                mmr: None
            }
        );
        assert_eq!(
            query(r#"{"query": {"recommend": {"positive": [1]}}}"#).unwrap(),
            QueryInterface::Recommend(RecommendInput {
                positive: Some(vec![VectorInput::Id(PointId::Num(1))]),
                negative: None,
                strategy: None,
            })
        );
        assert_eq!(
            query(r#"{"query": {"context": {"positive": 1, "negative": [0.5]}}}"#).unwrap(),
            QueryInterface::Context(ContextInput(vec![ContextPair {
                positive: VectorInput::Id(PointId::Num(1)),
                negative: VectorInput::Dense(vec![0.5]),
            }]))
        );
        assert_eq!(
            query(r#"{"query": {"order_by": "a"}}"#).unwrap(),
            QueryInterface::OrderBy(super::super::OrderByInput::Key("a".into()))
        );
        assert_eq!(
            query(r#"{"query": {"fusion": "rrf"}}"#).unwrap(),
            QueryInterface::Fusion(Fusion::Rrf)
        );
        assert_eq!(
            query(r#"{"query": {"rrf": {"k": 60, "weights": [1, 0.5]}}}"#).unwrap(),
            QueryInterface::Rrf(Rrf {
                k: Some(60),
                weights: Some(vec![1.0, 0.5])
            })
        );
        assert_eq!(
            query(r#"{"query": {"sample": "random"}}"#).unwrap(),
            QueryInterface::Sample(Sample::Random)
        );
        assert_eq!(
            query(r#"{"query": {"defaults": {"a": 1}, "formula": {"sum": []}}}"#).unwrap(),
            QueryInterface::Formula {
                formula: serde_json::json!({"sum": []}),
                defaults: Some(serde_json::json!({"a": 1}))
            }
        );
        assert_eq!(
            query(r#"{"query": {"relevance_feedback": {}}}"#).unwrap(),
            QueryInterface::Other("relevance_feedback")
        );
        assert!(query(r#"{"query": {"fusion": "max"}}"#)
            .unwrap_err()
            .contains("query"));
        assert_eq!(
            query(r#"{"query": {"text": "hello", "model": "m"}}"#).unwrap(),
            QueryInterface::Nearest {
                nearest: VectorInput::Inference("document"),
                mmr: None
            }
        );
    }

    #[test]
    fn bad_vectors_are_refused_with_their_place() {
        for (body, place) in [
            (r#"{"query": [1, null, 3]}"#, "query[1]"),
            (r#"{"query": [1, 1e39]}"#, "query[1]"),
            (r#"{"query": [[1, 2], [3, "x"]]}"#, "query[1][1]"),
            (r#"{"query": {"text": [1, 2]}}"#, "query"),
            (r#"{"query": {"indices": [1]}}"#, "query"),
            (r#"{"query": {"nearest": [1], "bogus": 1}}"#, "query"),
            (r#"{"query": -3}"#, "query"),
            (r#"{"query": "not-a-uuid"}"#, "query"),
            (r#"{"query": [1], "limit": 2.5}"#, "limit"),
        ] {
            let e = query(body).expect_err(body);
            assert!(e.starts_with("Format error in JSON body: "), "{body}: {e}");
            assert!(e.contains(place), "{body}: `{e}` does not name {place}");
        }
    }

    #[test]
    fn a_vector_longer_than_the_limit_is_refused() {
        let long = format!(
            "{{\"query\": [{}]}}",
            vec!["1"; MAX_VECTOR_SIZE + 1].join(",")
        );
        let e = query(&long).expect_err("too long");
        assert!(e.contains(&MAX_VECTOR_SIZE.to_string()), "{e}");
        let fits = format!("{{\"query\": [{}]}}", vec!["1"; MAX_VECTOR_SIZE].join(","));
        assert!(query(&fits).is_ok());
    }

    #[test]
    fn point_vectors_read_single_or_named() {
        let single: VectorStruct = serde_json::from_str("[0.5, 1]").unwrap();
        assert_eq!(
            single,
            VectorStruct::Single(VectorInput::Dense(vec![0.5, 1.0]))
        );
        let named: VectorStruct =
            serde_json::from_str(r#"{"a": [1], "b": {"indices": [0], "values": [2]}}"#).unwrap();
        let VectorStruct::Named(named) = named else {
            panic!("named")
        };
        assert_eq!(named[0], ("a".to_string(), VectorInput::Dense(vec![1.0])));
        assert!(matches!(named[1].1, VectorInput::Sparse(_)));
        assert!(serde_json::from_str::<VectorStruct>(r#"{"a": 5}"#).is_err());
    }
}
