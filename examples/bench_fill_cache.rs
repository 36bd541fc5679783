//! Fills a Tsunagi cache directory with N small synthetic studies (1 series, 1 tiny CT-like
//! instance each) for `scripts/bench.sh`'s QIDO load test: real Part 10 files at the cache's
//! own layout (`files/{study}/{series}/{sop}.dcm`), indexed exactly as a C-STORE would be
//! (`store::ingest::index_file`, `Index::upsert`), so the gateway's start-up repair keeps them.
//! Not durable (no fsync): this is a bench fixture, not an ingest path.
//!
//!     cargo run --release --example bench_fill_cache -- <cache-dir> <studies>

use std::path::PathBuf;
use std::time::Instant;

use sha2::{Digest, Sha256};
use tsunagi::store::disk::Disk;
use tsunagi::store::{bulk_prefix, ingest, Index};

#[path = "../benches/support/synth.rs"]
mod synth;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(n)) = (args.next(), args.next()) else {
        eprintln!("usage: bench_fill_cache <cache-dir> <studies>");
        std::process::exit(2);
    };
    let root = PathBuf::from(dir);
    let n: usize = n.parse()?;
    let started = Instant::now();
    let disk = Disk::new(&root)?;
    let index = Index::open(&root.join("index.sqlite"))?;
    for i in 0..n {
        let spec = synth::study_spec(i, n);
        let scratch = disk.tmp_dir().join("fill.dcm");
        synth::write_instance(
            &scratch,
            &spec,
            &spec.sop_uid,
            0,
            &synth::Pixels::Native16 {
                rows: 16,
                columns: 16,
                frames: 1,
            },
        )?;
        let indexed = ingest::index_file(&scratch, bulk_prefix)?;
        let rel = Disk::relative_path(
            &indexed.study_uid,
            &indexed.series_uid,
            &indexed.sop_instance_uid,
        );
        let dest = disk.absolute(&rel);
        std::fs::create_dir_all(dest.parent().expect("parent"))?;
        std::fs::rename(&scratch, &dest)?;
        let bytes = std::fs::read(&dest)?;
        let sha = hex::encode(Sha256::digest(&bytes));
        index.upsert(&indexed, &rel, bytes.len() as u64, &sha, 1_700_000_000)?;
    }
    let (st, se, ins) = index.counts()?;
    eprintln!(
        "bench_fill_cache: {st} studies, {se} series, {ins} instances in {} ({:.1} s)",
        root.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
