use index_core::PointId;

#[test]
fn uuid_parses_and_prints_in_canonical_form() {
    let s = "550e8400-e29b-41d4-a716-446655440000";
    let id = PointId::parse_uuid(s).unwrap();
    assert_eq!(id.to_string(), s);
    assert_eq!(
        PointId::parse_uuid("550E8400E29B41D4A716446655440000"),
        Some(id)
    );
    for bad in [
        "",
        "550e8400",
        "550e8400-e29b-41d4-a716-44665544000g",
        "550e84-00e29b-41d4-a716-446655440000",
    ] {
        assert_eq!(PointId::parse_uuid(bad), None, "{bad}");
    }
}

#[test]
fn integers_sort_before_uuids() {
    let mut ids = vec![
        PointId::Uuid(1),
        PointId::Num(5),
        PointId::Num(2),
        PointId::Uuid(0),
    ];
    ids.sort();
    assert_eq!(
        ids,
        vec![
            PointId::Num(2),
            PointId::Num(5),
            PointId::Uuid(0),
            PointId::Uuid(1)
        ]
    );
}
