//! AMI parse throughput on real captures from the rig (`fixtures/ami/rig-capture-*.ami`,
//! made with `cargo run --example ami_capture`): messages/s and MB/s, for the whole
//! capture in one buffer and for the same bytes arriving in 4 KiB reads like a socket's.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use medcall::ami::codec::{AmiCodec, decode_all};
use medcall::ami::{Frame, Limits};
use tokio_util::codec::Decoder;

fn captures() -> Vec<(String, Vec<u8>)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/ami");
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("rig-capture-") && n.ends_with(".ami"))
        })
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    out.sort();
    out
}

fn in_reads(bytes: &[u8], read: usize) -> usize {
    let mut codec = AmiCodec::new(Limits::default());
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut n = 0;
    for piece in bytes.chunks(read) {
        buf.extend_from_slice(piece);
        while let Ok(Some(frame)) = codec.decode(&mut buf) {
            if matches!(frame, Frame::Message(_)) {
                n += 1;
            }
            black_box(frame);
        }
    }
    n
}

fn bench(c: &mut Criterion) {
    for (name, bytes) in captures() {
        let messages = decode_all(&bytes, Limits::default(), true)
            .iter()
            .filter(|f| matches!(f, Frame::Message(_)))
            .count();
        println!("{name}: {} bytes, {messages} messages", bytes.len());
        let mut g = c.benchmark_group(format!("ami_parse/{name}"));
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_function("bytes/one-buffer", |b| {
            b.iter(|| decode_all(black_box(&bytes), Limits::default(), true).len())
        });
        g.bench_function("bytes/4KiB-reads", |b| {
            b.iter(|| in_reads(black_box(&bytes), 4096))
        });
        g.throughput(Throughput::Elements(messages as u64));
        g.bench_function("messages/one-buffer", |b| {
            b.iter(|| decode_all(black_box(&bytes), Limits::default(), true).len())
        });
        g.bench_function("messages/4KiB-reads", |b| {
            b.iter(|| in_reads(black_box(&bytes), 4096))
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
