//! `spate dump FILE...`: print the records of log segments or raw batch files.

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use bytes::Bytes;
use spate::record::{batches, ColumnarBatch, DecodeOptions, DEFAULT_MAX_DECOMPRESSED};

use crate::format::{Fields, Format};

#[derive(clap::Args)]
pub struct Args {
    /// Output format, with kcat's tokens: %t %p %o %T %k %K %s %S %h, \n \t.
    #[arg(short = 'f', long = "format", default_value = "%s\\n")]
    format: String,
    /// Only check structure and CRCs, and print a summary per file.
    #[arg(long)]
    verify: bool,
    /// Topic for %t (default: from a `TOPIC-PARTITION/` directory name, if the file is in one).
    #[arg(short = 't', long = "topic")]
    topic: Option<String>,
    /// Partition for %p (default: as for --topic).
    #[arg(short = 'p', long = "partition")]
    partition: Option<i32>,
    /// Largest decompressed size accepted for one batch, in bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_DECOMPRESSED)]
    max_decompressed: usize,
    /// Files: Kafka log segments or concatenated record batches.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

/// Counts for the `--verify` summary.
#[derive(Default)]
struct Summary {
    batches: u64,
    records: u64,
    control: u64,
    bytes: u64,
    first_offset: Option<i64>,
    last_offset: Option<i64>,
    codecs: [u64; 5],
}

pub fn run(args: &Args) -> Result<ExitCode, String> {
    let format = Format::parse(&args.format).map_err(|e| format!("-f: {e}"))?;
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut failed = false;
    for path in &args.files {
        let (topic, partition) = topic_partition(path);
        let topic = args.topic.clone().or(topic);
        let partition = args.partition.or(partition);
        let data = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        match dump_file(
            args,
            &format,
            Bytes::from(data),
            topic.as_deref(),
            partition,
            &mut out,
        ) {
            Ok(summary) if args.verify => {
                let codecs: Vec<String> = ["none", "gzip", "snappy", "lz4", "zstd"]
                    .iter()
                    .zip(summary.codecs)
                    .filter(|(_, n)| *n > 0)
                    .map(|(c, n)| format!("{c}×{n}"))
                    .collect();
                let offsets = match (summary.first_offset, summary.last_offset) {
                    (Some(a), Some(b)) => format!("offsets {a}..={b}"),
                    _ => "no records".into(),
                };
                writeln!(
                    out,
                    "{}: OK: {} bytes, {} batches ({}), {} records, {} control batches, {}",
                    path.display(),
                    summary.bytes,
                    summary.batches,
                    if codecs.is_empty() {
                        "-".into()
                    } else {
                        codecs.join(" ")
                    },
                    summary.records,
                    summary.control,
                    offsets
                )
                .map_err(|e| e.to_string())?;
            }
            Ok(_) => {}
            Err(e) => {
                out.flush().map_err(|e| e.to_string())?;
                eprintln!("spate dump: {}: {e}", path.display());
                failed = true;
            }
        }
    }
    out.flush().map_err(|e| e.to_string())?;
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn dump_file(
    args: &Args,
    format: &Format,
    data: Bytes,
    topic: Option<&str>,
    partition: Option<i32>,
    out: &mut impl Write,
) -> Result<Summary, String> {
    let opts = DecodeOptions {
        max_decompressed: args.max_decompressed,
    };
    let mut summary = Summary {
        bytes: data.len() as u64,
        ..Summary::default()
    };
    let mut batch = ColumnarBatch::default();
    let mut it = batches(data);
    for raw in it.by_ref() {
        let raw = raw.map_err(|e| e.to_string())?;
        raw.decode_into(&mut batch, &opts)
            .map_err(|e| e.to_string())?;
        summary.batches += 1;
        summary.records += batch.len() as u64;
        summary.codecs[(raw.attributes() & 7) as usize] += 1;
        if batch.header().is_control() {
            summary.control += 1;
        }
        if !batch.is_empty() {
            summary.first_offset.get_or_insert(batch.offset(0));
            summary.last_offset = Some(batch.offset(batch.len() - 1));
        }
        if args.verify || batch.header().is_control() {
            continue;
        }
        for i in 0..batch.len() {
            format
                .write(
                    out,
                    &Fields {
                        topic,
                        partition,
                        offset: batch.offset(i),
                        timestamp: batch.timestamp(i),
                        key: batch.key(i),
                        value: batch.value(i),
                        headers: batch.headers(i),
                    },
                )
                .map_err(|e| e.to_string())?;
        }
    }
    if let Some(p) = it.partial() {
        let needed = p
            .needed
            .map_or("at least 12".to_string(), |n| n.to_string());
        return Err(format!(
            "truncated batch at byte {}: it needs {needed} bytes, the file has {} left",
            p.at, p.available
        ));
    }
    Ok(summary)
}

/// `.../my-topic-3/00000000000000000000.log` → (`my-topic`, 3).
fn topic_partition(path: &Path) -> (Option<String>, Option<i32>) {
    let dir = path.canonicalize().ok().and_then(|p| {
        p.parent()
            .and_then(|d| d.file_name())
            .map(|n| n.to_string_lossy().into_owned())
    });
    if let Some((topic, part)) = dir.as_deref().and_then(|d| d.rsplit_once('-')) {
        if let Ok(p) = part.parse::<i32>() {
            if !topic.is_empty() {
                return (Some(topic.to_owned()), Some(p));
            }
        }
    }
    (None, None)
}
