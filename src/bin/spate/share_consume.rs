//! `spate share-consume`: a share group member (KIP-932) printing the records it gets, in
//! `spate consume`'s formats. Each record is accepted once written out (flushed); records
//! past `-c` are released to the group; a killed process's records go to another member after
//! their acquisition lock.

use std::io::{self, BufWriter, Write};
use std::process::ExitCode;

use spate::consumer::share::{AcknowledgeType, AcknowledgementMode, ShareConfig, ShareConsumer};

use crate::common::{self, ConnArgs};
use crate::format::{Fields, Format};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Topic to read (repeatable).
    #[arg(short = 't', long = "topic", required = true)]
    pub topics: Vec<String>,
    /// The share group.
    #[arg(short = 'G', value_name = "GROUP")]
    pub group: String,
    /// Stop after this many records.
    #[arg(short = 'c', long = "count")]
    pub count: Option<u64>,
    /// Output format, with kcat's tokens: %t %p %o %T %k %K %s %S %h, escapes \n \t \r \\.
    #[arg(short = 'f', long = "format", default_value = "%s\\n")]
    pub format: String,
    /// Print the key and DELIM before each value (kcat's -K; ignored with -f).
    #[arg(short = 'K', value_name = "DELIM")]
    pub key_delimiter: Option<String>,
}

pub fn run(args: &Args) -> Result<ExitCode, String> {
    let format = match (&args.key_delimiter, args.format.as_str()) {
        (Some(d), "%s\\n") => Format::parse(&format!("%k{d}%s\\n")),
        _ => Format::parse(&args.format),
    }
    .map_err(|e| format!("-f: {e}"))?;
    let mut pairs = args.conn.pairs()?;
    pairs.push(("group.id".into(), args.group.clone()));
    let mut config = ShareConfig::from_pairs(pairs).map_err(|e| format!("configuration: {e}"))?;
    config.client.client_id = "spate-share-consume".into();
    config.acknowledgement_mode = AcknowledgementMode::Explicit;
    args.conn.block_on(async {
        // SIGINT or SIGTERM: stop, acknowledge what was written, leave, exit 0.
        let stop = common::Signals::listen()?.stop_requested();
        tokio::pin!(stop);
        let mut consumer = ShareConsumer::new(config)
            .await
            .map_err(|e| e.to_string())?;
        let topics: Vec<&str> = args.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics).map_err(|e| e.to_string())?;
        let stdout = io::stdout();
        let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
        let mut printed = 0u64;
        let limit = args.count.unwrap_or(u64::MAX);
        while printed < limit {
            let batch = tokio::select! {
                () = &mut stop => break,
                batch = consumer.next() => batch.map_err(|e| e.to_string())?,
            };
            let mut written = 0usize;
            for r in batch.records() {
                if printed == limit {
                    break;
                }
                let record = r.record();
                format
                    .write(
                        &mut out,
                        &Fields {
                            topic: Some(batch.topic()),
                            partition: Some(batch.partition()),
                            offset: r.offset(),
                            timestamp: r.timestamp(),
                            key: r.key(),
                            value: r.value(),
                            headers: record.headers(),
                        },
                    )
                    .map_err(|e| format!("writing output: {e}"))?;
                written += 1;
                printed += 1;
            }
            // Accepted once written out; what -c cut off goes back to the group.
            out.flush().map_err(|e| format!("writing output: {e}"))?;
            let offsets: Vec<i64> = batch.records().map(|r| r.offset()).collect();
            for (i, offset) in offsets.into_iter().enumerate() {
                let kind = if i < written {
                    AcknowledgeType::Accept
                } else {
                    AcknowledgeType::Release
                };
                consumer
                    .acknowledge(&batch, offset, kind)
                    .map_err(|e| e.to_string())?;
            }
        }
        out.flush().map_err(|e| format!("writing output: {e}"))?;
        consumer.close().await.map_err(|e| e.to_string())?;
        Ok(ExitCode::SUCCESS)
    })
}
