//! Criterion micro-benchmarks of the codec: `cargo bench --bench codec`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use torq::protocol::{Crc, VenueId};

#[path = "../perf/src/codec.rs"]
mod codec;

fn benches(c: &mut Criterion) {
    let trade = codec::sample_trade();
    let mut buf = [0u8; 128];
    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Elements(1));

    let mut sequence = 0u64;
    group.bench_function("construct", |b| {
        b.iter(|| {
            sequence += 1;
            codec::construct(black_box(&mut buf), black_box(&trade), sequence, Crc::Compute)
        })
    });
    group.bench_function("construct_nocrc", |b| {
        b.iter(|| {
            sequence += 1;
            codec::construct(black_box(&mut buf), black_box(&trade), sequence, Crc::Skip)
        })
    });

    let len = codec::construct(&mut buf, &trade, 1, Crc::Compute);
    let frame = buf[..len].to_vec();
    let with_crc = codec::market_data_checks(true);
    let without_crc = codec::market_data_checks(false);
    group.bench_function("parse", |b| b.iter(|| codec::parse(black_box(&frame), &with_crc)));
    group.bench_function("parse_nocrc", |b| b.iter(|| codec::parse(black_box(&frame), &without_crc)));

    let mut index = 0usize;
    group.bench_function("instrument", |b| {
        b.iter(|| {
            index = index.wrapping_add(1);
            black_box(codec::instrument_round_trip(VenueId::Kraken, black_box(codec::SYMBOLS[index & 63])))
        })
    });
    group.bench_function("crc_only", |b| b.iter(|| codec::crc_only(black_box(&frame))));
    group.finish();
}

criterion_group!(codec_benches, benches);
criterion_main!(codec_benches);
