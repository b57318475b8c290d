//! Every trained model and code array survives a save/load round trip, and a damaged, foreign,
//! truncated or other-version file is refused with an error.

use crate::common::clustered;
use quant::{
    BinaryQuantizer, BinaryQuantizerConfig, Error, KMeans, KMeansConfig, ProductQuantizer,
    ProductQuantizerConfig, ScalarQuantizer, ScalarQuantizerConfig,
};

fn bytes_of(write: impl FnOnce(&mut Vec<u8>) -> quant::Result<()>) -> Vec<u8> {
    let mut out = Vec::new();
    write(&mut out).unwrap();
    out
}

/// Round-trips `bytes` through `read`, then checks that every kind of damage is refused.
fn check_damage<T: std::fmt::Debug>(bytes: &[u8], read: impl Fn(&[u8]) -> quant::Result<T>) {
    read(bytes).expect("intact file reads");

    // One flipped bit anywhere in the payload or checksum.
    for pos in [24, bytes.len() / 2, bytes.len() - 5, bytes.len() - 1] {
        let mut bad = bytes.to_vec();
        bad[pos] ^= 0x10;
        let err = read(&bad).unwrap_err();
        assert!(
            matches!(err, Error::Checksum { .. }),
            "flip at {pos}: {err}"
        );
    }
    // Another format version.
    let mut bad = bytes.to_vec();
    bad[8] = 2;
    assert!(matches!(
        read(&bad).unwrap_err(),
        Error::Version {
            found: 2,
            supported: 1,
            ..
        }
    ));
    // Not our file.
    let mut bad = bytes.to_vec();
    bad[0] = b'X';
    assert!(matches!(read(&bad).unwrap_err(), Error::Format { .. }));
    // Truncated at every length.
    for len in [0, 10, 23, 24, bytes.len() / 2, bytes.len() - 1] {
        let err = read(&bytes[..len]).unwrap_err();
        assert!(
            matches!(err, Error::Format { .. }),
            "truncated to {len}: {err}"
        );
    }
    // A length field claiming more than there is.
    let mut bad = bytes.to_vec();
    bad[16..24].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
    assert!(matches!(read(&bad).unwrap_err(), Error::Format { .. }));
}

#[test]
fn scalar_quantizer_and_codes_round_trip() {
    let data = clustered(1000, 12, 5, 0.2, 51);
    let sq = ScalarQuantizer::train(&data, 12, &ScalarQuantizerConfig::default()).unwrap();
    let codes = sq.encode_all(&data).unwrap();
    let sq_bytes = bytes_of(|o| sq.write_to(o));
    assert_eq!(ScalarQuantizer::read_from(&mut &sq_bytes[..]).unwrap(), sq);
    check_damage(&sq_bytes, |b| ScalarQuantizer::read_from(&mut &b[..]));
    let code_bytes = bytes_of(|o| codes.write_to(o));
    assert_eq!(
        quant::ScalarCodes::read_from(&mut &code_bytes[..]).unwrap(),
        codes
    );
    check_damage(&code_bytes, |b| quant::ScalarCodes::read_from(&mut &b[..]));
    // A quantizer file is not a code file.
    assert!(matches!(
        quant::ScalarCodes::read_from(&mut &sq_bytes[..]).unwrap_err(),
        Error::Format { .. }
    ));
}

#[test]
fn product_quantizer_and_codes_round_trip() {
    let data = clustered(600, 10, 5, 0.2, 52);
    let pq = ProductQuantizer::train(&data, 10, &ProductQuantizerConfig::new(3)).unwrap();
    let codes = pq.encode_all(&data).unwrap();
    let pq_bytes = bytes_of(|o| pq.write_to(o));
    assert_eq!(ProductQuantizer::read_from(&mut &pq_bytes[..]).unwrap(), pq);
    check_damage(&pq_bytes, |b| ProductQuantizer::read_from(&mut &b[..]));
    let code_bytes = bytes_of(|o| codes.write_to(o));
    assert_eq!(
        quant::PqCodes::read_from(&mut &code_bytes[..]).unwrap(),
        codes
    );
    check_damage(&code_bytes, |b| quant::PqCodes::read_from(&mut &b[..]));
}

#[test]
fn binary_quantizer_and_codes_round_trip() {
    let data = clustered(300, 70, 5, 0.2, 53);
    let bq = BinaryQuantizer::train(&data, 70, &BinaryQuantizerConfig::default()).unwrap();
    let codes = bq.encode_all(&data).unwrap();
    let bq_bytes = bytes_of(|o| bq.write_to(o));
    assert_eq!(BinaryQuantizer::read_from(&mut &bq_bytes[..]).unwrap(), bq);
    check_damage(&bq_bytes, |b| BinaryQuantizer::read_from(&mut &b[..]));
    let code_bytes = bytes_of(|o| codes.write_to(o));
    assert_eq!(
        quant::BinaryCodes::read_from(&mut &code_bytes[..]).unwrap(),
        codes
    );
    check_damage(&code_bytes, |b| quant::BinaryCodes::read_from(&mut &b[..]));
}

#[test]
fn kmeans_round_trips_through_a_file() {
    let data = clustered(500, 6, 4, 0.2, 54);
    let km = KMeans::train(&data, 6, &KMeansConfig::new(4)).unwrap();
    let path = std::env::temp_dir().join(format!("vr-quant-kmeans-{}.bin", std::process::id()));
    km.save(&path).unwrap();
    let loaded = KMeans::load(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(loaded.centroids(), km.centroids());
    assert_eq!(loaded.iterations(), km.iterations());
    check_damage(&bytes_of(|o| km.write_to(o)), |b| {
        KMeans::read_from(&mut &b[..])
    });
    assert!(matches!(
        KMeans::load(path.with_extension("missing")).unwrap_err(),
        Error::Io(_)
    ));
}
