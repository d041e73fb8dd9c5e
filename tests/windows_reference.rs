//! spate's event-time windows (`spate::pipeline::window`) against an independent reference
//! (`tests/support/windows_reference.py`, written from the same rules, record by record): a
//! million records over 200 keys with event times out of order by up to ±5 s, a late tail (1 %
//! of the records two minutes behind) and 0.5 % 9–20 s behind (around the 10 s of allowed
//! lateness: late for some windows and not others), in batches of varying size; tumbling, hopping and
//! session windows, counts, sums and averages. The final results must be equal, window for
//! window, and so must the number of late records dropped.

mod support;

use std::io::Write;

use spate::pipeline::window::{Aggregate, WindowSpec, WindowedAggregator};

const RECORDS: usize = 1_000_000;
const LATENESS: i64 = 10_000;

/// The input: (key, event time, value), deterministic.
fn input() -> Vec<(String, i64, i64)> {
    let mut rng = fastrand::Rng::with_seed(848_932);
    (0..RECORDS)
        .map(|i| {
            let key = format!("k{}", rng.usize(0..200));
            let base = 1_700_000_000_000 + i as i64 * 10;
            let time = match rng.u32(0..200) {
                // The late tail: far behind every open window.
                0 | 1 => base - 120_000,
                // Just past the allowed lateness: late for some windows, not others.
                2 => base - rng.i64(9_000..=20_000),
                _ => base + rng.i64(-5_000..=5_000),
            };
            (key, time, rng.i64(0..100))
        })
        .collect()
}

fn spate_results(
    input: &[(String, i64, i64)],
    spec: WindowSpec,
    agg: Aggregate,
) -> (Vec<String>, u64) {
    let avg = agg == Aggregate::Avg;
    let mut w = WindowedAggregator::new(spec, agg, LATENESS);
    let mut out = Vec::new();
    let mut rng = fastrand::Rng::with_seed(7);
    let mut rest = input;
    while !rest.is_empty() {
        let n = rng.usize(1..2_000).min(rest.len());
        let (batch, tail) = rest.split_at(n);
        out.extend(w.push(batch.iter().map(|(k, t, v)| (k.as_bytes(), *t, *v as f64))));
        rest = tail;
    }
    out.extend(w.finish());
    let mut lines: Vec<(String, i64, i64, String)> = out
        .into_iter()
        .map(|r| {
            let value = if avg {
                format!("{:?}", r.value)
            } else {
                assert_eq!(r.value.fract(), 0.0, "integer inputs give integer results");
                (r.value as i64).to_string()
            };
            (String::from_utf8(r.key).unwrap(), r.start, r.end, value)
        })
        .collect();
    lines.sort();
    let lines = lines
        .into_iter()
        .map(|(k, s, e, v)| format!("{k},{s},{e},{v}"))
        .collect();
    (lines, w.late())
}

/// The reference's `SUM/COUNT` averages as the f64 the division gives.
fn averages(lines: Vec<String>) -> Vec<String> {
    lines
        .iter()
        .map(|l| support::reference_average(l))
        .collect()
}

#[test]
fn windows_equal_the_reference_for_a_million_out_of_order_records() {
    let input = input();
    let dir = std::env::temp_dir().join(format!("spate-windows-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("input.csv");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        for (k, t, v) in &input {
            writeln!(f, "{k},{t},{v}").unwrap();
        }
    }
    let cases = [
        (WindowSpec::Tumbling { size: 60_000 }, "tumbling:60000"),
        (
            WindowSpec::Hopping {
                size: 60_000,
                advance: 20_000,
            },
            "hopping:60000:20000",
        ),
        (WindowSpec::Session { gap: 1_500 }, "session:1500"),
    ];
    for (spec, spec_arg) in cases {
        for (agg, agg_arg) in [
            (Aggregate::Count, "count"),
            (Aggregate::Sum, "sum"),
            (Aggregate::Avg, "avg"),
        ] {
            let (ours, our_late) = spate_results(&input, spec, agg);
            let (mut theirs, their_late) =
                support::windows_reference(&path, spec_arg, agg_arg, LATENESS);
            if agg_arg == "avg" {
                theirs = averages(theirs);
            }
            assert!(our_late > 0, "{spec_arg}: the late tail is dropped");
            assert_eq!(our_late, their_late, "{spec_arg} {agg_arg}: late records");
            assert_eq!(ours.len(), theirs.len(), "{spec_arg} {agg_arg}: windows");
            if let Some((i, (a, b))) = ours
                .iter()
                .zip(&theirs)
                .enumerate()
                .find(|(_, (a, b))| a != b)
            {
                panic!("{spec_arg} {agg_arg}: window {i} differs: spate {a}, reference {b}");
            }
            eprintln!(
                "{spec_arg} {agg_arg}: {} windows, {our_late} late records, equal",
                ours.len()
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
