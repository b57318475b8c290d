use cache::KeyBuilder;
use serde_json::json;

fn key(build: impl FnOnce(&mut KeyBuilder)) -> Vec<u8> {
    let mut builder = KeyBuilder::new();
    build(&mut builder);
    builder.finish()
}

#[test]
fn part_boundaries_and_types_are_part_of_the_key() {
    let distinct = [
        key(|k| {
            k.push_str("ab").push_str("c");
        }),
        key(|k| {
            k.push_str("a").push_str("bc");
        }),
        key(|k| {
            k.push_str("abc");
        }),
        key(|k| {
            k.push_str("abc").push_str("");
        }),
        // The same 8 bytes as a string and as a number.
        key(|k| {
            k.push_str("\u{1}\0\0\0\0\0\0\0");
        }),
        key(|k| {
            k.push_u64(1);
        }),
        key(|k| {
            k.push_f32s(&[1.0, 2.0]);
        }),
        key(|k| {
            k.push_f32s(&[1.0]).push_f32s(&[2.0]);
        }),
        key(|k| {
            k.push_json(&json!("abc"));
        }),
    ];
    for (i, a) in distinct.iter().enumerate() {
        for (j, b) in distinct.iter().enumerate().skip(i + 1) {
            assert_ne!(a, b, "keys {i} and {j} collide");
        }
    }
}

#[test]
fn json_objects_are_canonical_whatever_their_key_order() {
    let a: serde_json::Value = serde_json::from_str(
        r#"{"filter":{"must":[{"key":"x","match":{"value":1}}]},"limit":5,"with_payload":true}"#,
    )
    .unwrap();
    let b: serde_json::Value = serde_json::from_str(
        r#"{"with_payload":true,"limit":5,"filter":{"must":[{"match":{"value":1},"key":"x"}]}}"#,
    )
    .unwrap();
    assert_eq!(
        key(|k| {
            k.push_json(&a);
        }),
        key(|k| {
            k.push_json(&b);
        })
    );
    // Array order is meaningful and kept.
    assert_ne!(
        key(|k| {
            k.push_json(&json!([1, 2]));
        }),
        key(|k| {
            k.push_json(&json!([2, 1]));
        })
    );
    assert_ne!(
        key(|k| {
            k.push_json(&json!({"limit": 5}));
        }),
        key(|k| {
            k.push_json(&json!({"limit": 6}));
        })
    );
}

#[test]
fn floats_are_keyed_by_bit_pattern() {
    let zero = key(|k| {
        k.push_f32s(&[0.0]);
    });
    let negative_zero = key(|k| {
        k.push_f32s(&[-0.0]);
    });
    assert_ne!(zero, negative_zero);
    let nan = key(|k| {
        k.push_f32s(&[f32::NAN]);
    });
    assert_eq!(
        nan,
        key(|k| {
            k.push_f32s(&[f32::NAN]);
        }),
        "the same NaN bits are the same key"
    );
}

#[test]
fn as_bytes_shows_the_key_so_far() {
    let mut builder = KeyBuilder::with_capacity(64);
    builder.push_u64(3);
    let partial = builder.as_bytes().to_vec();
    builder.push_str("x");
    let full = builder.finish();
    assert!(full.starts_with(&partial) && full.len() > partial.len());
}
