use index_core::{AllowedSet, PointFilter};

#[test]
fn allowed_set_behaves_like_a_set() {
    let mut set = AllowedSet::with_capacity(10);
    assert!(set.is_empty());
    assert!(set.insert(3));
    assert!(!set.insert(3));
    assert!(set.insert(1000));
    assert!(set.insert(64));
    assert_eq!(set.len(), 3);
    assert!(set.contains(1000) && set.contains(3) && !set.contains(4) && !set.contains(5000));
    assert_eq!(set.iter().collect::<Vec<_>>(), vec![3, 64, 1000]);
    assert!(set.remove(64));
    assert!(!set.remove(64));
    assert!(!set.remove(1 << 30));
    assert_eq!(set.len(), 2);
    assert_eq!(set.cardinality_estimate(), Some(2));
    assert_eq!(
        set.allowed_offsets().unwrap().collect::<Vec<_>>(),
        vec![3, 1000]
    );
}

#[test]
fn closures_are_filters() {
    let even = |o: u32| o.is_multiple_of(2);
    assert!(even.allows(4) && !even.allows(5));
    assert_eq!(even.cardinality_estimate(), None);
    assert!(even.allowed_offsets().is_none());
}
