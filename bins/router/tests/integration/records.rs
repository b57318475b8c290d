//! Points by id, scroll, count, payload edits, deletes, payload indexes and the collection
//! list, on four shards with integer and UUID ids.

use crate::common::{ids, DataDirs, Rng, Router};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::BTreeSet;

const NAME: &str = "records";

fn group_filter(g: u64) -> Value {
    json!({"must": [{"key": "group", "match": {"value": g}}]})
}

async fn count(r: &Router, filter: Option<Value>) -> u64 {
    let body = match filter {
        Some(f) => json!({"filter": f, "exact": true}),
        None => json!({"exact": true}),
    };
    r.post(&format!("/collections/{NAME}/points/count"), body)
        .await["count"]
        .as_u64()
        .expect("count")
}

async fn payload_of(r: &Router, id: Value) -> Value {
    let records = r
        .post(&format!("/collections/{NAME}/points"), json!({"ids": [id]}))
        .await;
    records[0]["payload"].clone()
}

/// Every id, page by page.
async fn scroll_all(r: &Router, page: usize, filter: Option<Value>) -> Vec<Value> {
    let mut out = Vec::new();
    let mut offset = Value::Null;
    for _ in 0..1000 {
        let mut body = json!({"limit": page, "with_payload": false});
        if !offset.is_null() {
            body["offset"] = offset.clone();
        }
        if let Some(f) = &filter {
            body["filter"] = f.clone();
        }
        let res = r
            .post(&format!("/collections/{NAME}/points/scroll"), body)
            .await;
        let points = res["points"].as_array().expect("points");
        assert!(points.len() <= page);
        out.extend(ids(points));
        offset = res["next_page_offset"].clone();
        if offset.is_null() {
            return out;
        }
        assert_eq!(points.len(), page, "a page before the last is full");
    }
    panic!("scroll did not end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_payloads_and_collections() {
    let dirs = DataDirs::new();
    let r = Router::start(&dirs, &[]);
    r.create(
        NAME,
        json!({"vectors": {"size": 4, "distance": "Euclid"}, "shard_number": 4}),
    )
    .await;
    let mut rng = Rng::new(5);
    let mut uuids: Vec<String> = (0..10).map(|_| rng.uuid()).collect();
    let mut list = Vec::new();
    let mut vectors = std::collections::HashMap::new();
    for i in 0u64..30 {
        let v = rng.vector(4);
        vectors.insert(json!(i), v.clone());
        list.push(
            json!({"id": i, "vector": v, "payload": {"group": i % 3, "n": i, "nested": {"x": i}}}),
        );
    }
    for (k, u) in uuids.iter().enumerate() {
        let v = rng.vector(4);
        vectors.insert(json!(u), v.clone());
        list.push(json!({"id": u.to_uppercase(), "vector": v, "payload": {"group": k as u64 % 3, "n": 100 + k}}));
    }
    r.upsert(NAME, json!({ "points": list })).await;
    assert_eq!(r.info(NAME).await["points_count"], json!(40));
    // In group 0, so the delete by filter below leaves it for the delete by id.
    let group0_uuid = uuids[0].clone();
    uuids.sort();

    // Retrieve: present ids only, UUIDs lower case, payload on and vector off by default.
    let got = r
        .post(
            &format!("/collections/{NAME}/points"),
            json!({"ids": [3, uuids[0].to_uppercase(), 999_999]}),
        )
        .await;
    let got = got.as_array().unwrap();
    let got_ids: BTreeSet<String> = got.iter().map(|p| p["id"].to_string()).collect();
    let want: BTreeSet<String> = [json!(3), json!(uuids[0])]
        .iter()
        .map(Value::to_string)
        .collect();
    assert_eq!(got_ids, want, "{got:?}");
    for p in got {
        assert!(p["payload"]["group"].is_u64(), "{p}");
        assert!(p["vector"].is_null(), "{p}");
    }
    let got = r
        .post(
            &format!("/collections/{NAME}/points"),
            json!({"ids": [4], "with_payload": ["n", "nested.x"], "with_vector": true}),
        )
        .await;
    assert_eq!(got[0]["payload"], json!({"n": 4, "nested": {"x": 4}}));
    assert_eq!(got[0]["vector"], json!(vectors[&json!(4)]));

    // One point by path.
    let p = r.get(&format!("/collections/{NAME}/points/5")).await;
    assert_eq!(p["id"], json!(5));
    assert_eq!(p["payload"]["n"], json!(5));
    assert_eq!(p["vector"], json!(vectors[&json!(5)]));
    let p = r
        .get(&format!(
            "/collections/{NAME}/points/{}",
            uuids[1].to_uppercase()
        ))
        .await;
    assert_eq!(p["id"], json!(uuids[1]));
    let (status, body) = r
        .call(
            Method::GET,
            &format!("/collections/{NAME}/points/424242"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(body["status"]["error"].is_string(), "{body}");

    // Scroll: integers ascending, then UUIDs in their order, each once.
    let mut expected: Vec<Value> = (0u64..30).map(|i| json!(i)).collect();
    expected.extend(uuids.iter().map(|u| json!(u)));
    assert_eq!(scroll_all(&r, 7, None).await, expected);
    assert_eq!(scroll_all(&r, 40, None).await, expected);
    let group1: Vec<Value> = (0u64..30)
        .filter(|i| i % 3 == 1)
        .map(|i| json!(i))
        .collect();
    let scrolled = scroll_all(&r, 4, Some(group_filter(1))).await;
    assert_eq!(&scrolled[..10], &group1[..], "integer ids of group 1 first");
    assert_eq!(scrolled.len(), 10 + 3, "three UUID points are in group 1");

    // Count, whole and filtered.
    assert_eq!(count(&r, None).await, 40);
    assert_eq!(count(&r, Some(group_filter(1))).await, 13);
    assert_eq!(
        count(
            &r,
            Some(json!({"must": [{"key": "n", "range": {"gte": 10, "lt": 20}}]}))
        )
        .await,
        10
    );

    // set_payload merges; by filter too.
    let base = format!("/collections/{NAME}/points/payload?wait=true");
    r.post(
        &base,
        json!({"payload": {"color": "red", "n": -1}, "points": [1, 2]}),
    )
    .await;
    assert_eq!(
        payload_of(&r, json!(1)).await,
        json!({"group": 1, "n": -1, "nested": {"x": 1}, "color": "red"})
    );
    r.post(
        &base,
        json!({"payload": {"flag": true}, "filter": group_filter(0)}),
    )
    .await;
    let flag = json!({"must": [{"key": "flag", "match": {"value": true}}]});
    assert_eq!(
        count(&r, Some(flag)).await,
        count(&r, Some(group_filter(0))).await
    );
    // The `key` form writes into a nested object.
    r.post(
        &base,
        json!({"payload": {"y": 7}, "points": [3], "key": "nested"}),
    )
    .await;
    assert_eq!(
        payload_of(&r, json!(3)).await["nested"],
        json!({"x": 3, "y": 7})
    );

    // overwrite_payload replaces.
    r.put(&base, json!({"payload": {"only": 1}, "points": [1]}))
        .await;
    assert_eq!(payload_of(&r, json!(1)).await, json!({"only": 1}));

    // delete_payload removes keys, clear_payload everything.
    r.post(
        &format!("/collections/{NAME}/points/payload/delete?wait=true"),
        json!({"keys": ["color", "nested"], "points": [2]}),
    )
    .await;
    assert_eq!(payload_of(&r, json!(2)).await, json!({"group": 2, "n": -1}));
    r.post(
        &format!("/collections/{NAME}/points/payload/clear?wait=true"),
        json!({"points": [2]}),
    )
    .await;
    let cleared = payload_of(&r, json!(2)).await;
    assert!(
        cleared == json!({}) || cleared.is_null(),
        "cleared payload: {cleared}"
    );

    // Payload indexes show up in payload_schema and leave it when deleted.
    let r1 = r
        .put(
            &format!("/collections/{NAME}/index?wait=true"),
            json!({"field_name": "group", "field_schema": "integer"}),
        )
        .await;
    assert_eq!(r1["status"], "completed");
    r.put(
        &format!("/collections/{NAME}/index?wait=true"),
        json!({"field_name": "color", "field_schema": "keyword"}),
    )
    .await;
    let schema = r.info(NAME).await["payload_schema"].clone();
    assert_eq!(schema["group"]["data_type"], "integer", "{schema}");
    assert_eq!(schema["color"]["data_type"], "keyword", "{schema}");
    // Indexed and unindexed filters agree.
    assert_eq!(
        count(&r, Some(group_filter(1))).await,
        12,
        "point 1 lost its group"
    );

    // Delete by filter and by id.
    r.post(
        &format!("/collections/{NAME}/points/delete?wait=true"),
        json!({"filter": group_filter(1)}),
    )
    .await;
    assert_eq!(count(&r, Some(group_filter(1))).await, 0);
    assert_eq!(count(&r, None).await, 28);
    r.post(
        &format!("/collections/{NAME}/points/delete?wait=true"),
        json!({"points": [0, group0_uuid]}),
    )
    .await;
    assert_eq!(count(&r, None).await, 26);
    assert_eq!(r.info(NAME).await["points_count"], json!(26));
    let all = r
        .query(
            NAME,
            json!({"query": [0.0, 0.0, 0.0, 0.0], "limit": 100, "with_payload": true}),
        )
        .await;
    assert_eq!(all.len(), 26);
    assert!(all
        .iter()
        .all(|p| p["payload"]["group"] != json!(1) && p["id"] != json!(0)));

    let r2 = r
        .ok(
            Method::DELETE,
            &format!("/collections/{NAME}/index/group?wait=true"),
            None,
        )
        .await;
    assert!(r2["status"].is_string());
    let schema = r.info(NAME).await["payload_schema"].clone();
    assert!(schema.get("group").is_none(), "{schema}");
    assert_eq!(schema["color"]["data_type"], "keyword", "{schema}");

    // list / exists / delete.
    r.create("other", json!({"vectors": {"size": 2, "distance": "Dot"}}))
        .await;
    let list = r.get("/collections").await;
    let names: BTreeSet<&str> = list["collections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, BTreeSet::from([NAME, "other"]));
    assert_eq!(
        r.get("/collections/other/exists").await,
        json!({"exists": true})
    );
    let (status, body) = r
        .call(
            Method::PUT,
            "/collections/other",
            Some(&json!({"vectors": {"size": 2, "distance": "Dot"}})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(
        r.ok(Method::DELETE, "/collections/other", None).await,
        json!(true)
    );
    assert_eq!(
        r.ok(Method::DELETE, "/collections/other", None).await,
        json!(false)
    );
    assert_eq!(
        r.get("/collections/other/exists").await,
        json!({"exists": false})
    );
    let (status, body) = r.call(Method::GET, "/collections/other", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(
        body["status"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("other")),
        "{body}"
    );
}
