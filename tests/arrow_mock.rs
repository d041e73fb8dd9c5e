//! Arrow conversion (feature `arrow`) on batches consumed from the embedded cluster: keys,
//! values and headers are views into the consumed buffer (addresses checked), arrow's own
//! compute kernels agree with spate's, an Arrow batch goes to the producer, and an arrow
//! operator runs in a pipeline.

use std::sync::Arc;
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, TimestampMillisecondType};
use arrow_array::{
    Array, ArrayRef, BinaryViewArray, Int32Array, Int64Array, ListArray, RecordBatch, StringArray,
    StringViewArray, StructArray,
};
use arrow_buffer::OffsetBuffer;
use arrow_schema::{DataType, Field, Fields, Schema};
use spate::consumer::{Consumer, ConsumerConfig, Offset, OffsetReset};
use spate::formats::arrow::{self, from_columnar};
use spate::formats::FormatError;
use spate::mock::MockCluster;
use spate::pipeline::{ops, Chain, Guarantee, Pipeline};
use spate::producer::{Producer, ProducerConfig, Record};
use spate::record::{ColumnarBatch, Compression, Header};

const N: usize = 3000;

fn value(i: usize) -> String {
    match i % 4 {
        0 => format!("order {i} shipped to the harbour"),
        1 => format!("v{i}"), // short: inlined in its view
        2 => format!("order {i} is still pending, in lower case"),
        _ => format!("Refund {i}: SHIPPED twice"),
    }
}

async fn fill(cluster: &MockCluster, topic: &str, compression: Compression) {
    let producer = Producer::new(
        ProducerConfig::new(&cluster.bootstrap())
            .compression(compression)
            .linger(Duration::from_millis(20)),
    )
    .await
    .unwrap();
    let mut last = None;
    for i in 0..N {
        let key = format!("key-{i}");
        let v = value(i);
        let trace = format!("trace-{i}");
        let mut record = Record::new(topic).partition(0).value(v.as_bytes());
        if i % 5 != 0 {
            record = record.key(key.as_bytes());
        }
        if i % 3 == 0 {
            record = record
                .header("trace", Some(trace.as_bytes()))
                .header("empty", None);
        }
        last = Some(producer.send(record).await.unwrap());
    }
    last.unwrap().await.unwrap();
    producer.close().await.unwrap();
}

async fn consume_all(cluster: &MockCluster, topic: &str) -> Vec<ColumnarBatch> {
    let mut consumer = Consumer::new(ConsumerConfig::new(&cluster.bootstrap()))
        .await
        .unwrap();
    consumer.assign(&[(topic, 0, Offset::Beginning)]).unwrap();
    let mut batches = Vec::new();
    let mut seen = 0;
    while seen < N {
        let b = consumer.next_batch().await.unwrap();
        seen += b.batch().len();
        batches.push(b.batch().clone());
    }
    batches
}

fn within(inner: &[u8], outer: &[u8]) -> bool {
    let (o, i) = (outer.as_ptr() as usize, inner.as_ptr() as usize);
    i >= o && i + inner.len() <= o + outer.len()
}

/// Each converted column equals the batch's, and every key, value and header longer than an
/// Arrow view's inline 12 bytes is read from the consumed buffer itself.
fn check_views(batch: &ColumnarBatch) -> (usize, usize) {
    let rb = from_columnar(batch).unwrap();
    assert_eq!(rb.num_rows(), batch.len());
    let data = batch.data();
    let offsets = rb.column(0).as_primitive::<Int64Type>();
    let timestamps = rb.column(1).as_primitive::<TimestampMillisecondType>();
    let keys = rb.column(2).as_binary_view();
    let values = rb.column(3).as_binary_view();
    for col in [keys, values] {
        assert_eq!(col.data_buffers().len(), 1, "one block: the batch's buffer");
        assert_eq!(col.data_buffers()[0].as_ptr(), data.as_ptr(), "not a copy");
        assert_eq!(col.data_buffers()[0].len(), data.len());
    }
    let (mut shared, mut inlined) = (0, 0);
    for i in 0..batch.len() {
        assert_eq!(offsets.value(i), batch.offset(i));
        assert_eq!(timestamps.value(i), batch.timestamp(i));
        for (col, expected) in [(keys, batch.key(i)), (values, batch.value(i))] {
            assert_eq!(col.is_valid(i), expected.is_some(), "row {i}: null");
            if let Some(expected) = expected {
                let got = col.value(i);
                assert_eq!(got, expected, "row {i}");
                if got.len() > 12 {
                    assert!(within(got, data), "row {i}: a view into the buffer");
                    assert_eq!(got.as_ptr(), expected.as_ptr());
                    shared += 1;
                } else {
                    inlined += 1;
                }
            }
        }
    }
    let headers: &ListArray = rb.column(4).as_list();
    let entries = headers.values().as_struct();
    let hk = entries.column(0).as_binary_view();
    let hv = entries.column(1).as_binary_view();
    assert_eq!(hk.data_buffers()[0].as_ptr(), data.as_ptr());
    for i in 0..batch.len() {
        let range = headers.value_offsets()[i] as usize..headers.value_offsets()[i + 1] as usize;
        let got: Vec<(&[u8], Option<&[u8]>)> = range
            .map(|e| (hk.value(e), hv.is_valid(e).then(|| hv.value(e))))
            .collect();
        let expected: Vec<(&[u8], Option<&[u8]>)> = batch.headers(i).collect();
        assert_eq!(got, expected, "row {i}: headers");
    }
    (shared, inlined)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumed_batches_become_arrow_without_copying_keys_values_or_headers() {
    let cluster = MockCluster::start(1).await.unwrap();
    for (topic, compression) in [("plain", Compression::None), ("lz4", Compression::Lz4)] {
        cluster.create_topic(topic, 1);
        fill(&cluster, topic, compression).await;
        let batches = consume_all(&cluster, topic).await;
        let (mut shared, mut inlined, mut rows) = (0, 0, 0);
        for batch in &batches {
            let (s, i) = check_views(batch);
            shared += s;
            inlined += i;
            rows += batch.len();
        }
        assert_eq!(rows, N, "{topic}");
        assert!(
            shared >= 3 * N / 4 && inlined > N,
            "{topic}: {shared} shared, {inlined} inlined"
        );
    }
}

/// arrow's `contains` and filter kernels select the same rows as spate's `filter_contains`,
/// and upper-casing the filtered values through arrow gives what spate's `uppercase` writes:
/// both pipelines run on the same input and their outputs are compared record by record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arrow_kernels_in_a_pipeline_agree_with_spates_kernels() {
    let cluster = MockCluster::start(1).await.unwrap();
    for t in ["in", "by-spate", "by-arrow"] {
        cluster.create_topic(t, 1);
    }
    fill(&cluster, "in", Compression::Lz4).await;
    let run = |out: &'static str, chain: fn() -> Chain| {
        let consumer = ConsumerConfig::new(&cluster.bootstrap())
            .group_id(out)
            .auto_offset_reset(OffsetReset::Earliest);
        Pipeline::new(consumer, ProducerConfig::new(&cluster.bootstrap()))
            .from_topics(&["in"])
            .to_topic(out)
            .operators(chain)
            .guarantee(Guarantee::AtLeastOnce)
            .stop_at_end(true)
            .run()
    };
    let spate = run("by-spate", || {
        Chain::new()
            .then(ops::filter_contains(b"shipped"))
            .then(ops::uppercase())
    })
    .await
    .unwrap();
    let arrow = run("by-arrow", || {
        Chain::new().then(arrow::operator(|rb: RecordBatch| {
            let needle = arrow_array::Scalar::new(BinaryViewArray::from_iter_values([b"shipped"]));
            let mask = arrow_string::like::contains(rb.column(3), &needle)
                .map_err(|e| FormatError::Arrow(e.to_string()))?;
            let kept = arrow_select::filter::filter_record_batch(&rb, &mask)
                .map_err(|e| FormatError::Arrow(e.to_string()))?;
            // arrow-rs has no upper-case kernel (DataFusion's `upper` is one): map the view
            // array's strings.
            let values = kept
                .column(3)
                .as_binary_view()
                .clone()
                .to_string_view()
                .unwrap();
            let upper: StringViewArray = values
                .iter()
                .map(|v| v.map(str::to_ascii_uppercase))
                .collect();
            let mut columns = kept.columns().to_vec();
            columns[3] = Arc::new(upper);
            let mut fields = kept.schema().fields().to_vec();
            fields[3] = Arc::new(Field::new("value", DataType::Utf8View, true));
            RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
                .map_err(|e| FormatError::Arrow(e.to_string()))
        }))
    })
    .await
    .unwrap();
    assert_eq!(spate.records_in, N as u64);
    assert_eq!(arrow.records_in, N as u64);
    let by_spate = cluster.records("by-spate", 0).unwrap();
    let by_arrow = cluster.records("by-arrow", 0).unwrap();
    let expected = (0..N).filter(|i| value(*i).contains("shipped")).count();
    assert_eq!(by_spate.len(), expected);
    assert!(expected > N / 5);
    let strip = |r: &Vec<(i64, Option<bytes::Bytes>, Option<bytes::Bytes>)>| {
        r.iter()
            .map(|(_, k, v)| (k.clone(), v.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&by_arrow), strip(&by_spate));
    assert!(by_arrow.iter().all(|(_, _, v)| v
        .as_ref()
        .unwrap()
        .iter()
        .all(|b| !b.is_ascii_lowercase())));
}

fn headers_column(rows: &[Vec<Header<'_>>]) -> ListArray {
    let fields = Fields::from(vec![
        Field::new("key", DataType::Utf8, false),
        Field::new("value", DataType::Binary, true),
    ]);
    let keys: StringArray = rows.iter().flatten().map(|(k, _)| Some(*k)).collect();
    let values: arrow_array::BinaryArray = rows.iter().flatten().map(|(_, v)| *v).collect();
    let entries = StructArray::new(
        fields.clone(),
        vec![Arc::new(keys) as ArrayRef, Arc::new(values)],
        None,
    );
    ListArray::new(
        Arc::new(Field::new("item", DataType::Struct(fields), false)),
        OffsetBuffer::from_lengths(rows.iter().map(Vec::len)),
        Arc::new(entries),
        None,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_arrow_batch_is_produced_and_read_back() {
    let cluster = MockCluster::start(1).await.unwrap();
    cluster.create_topic("arrow", 2);
    let producer = Producer::new(ProducerConfig::new(&cluster.bootstrap()))
        .await
        .unwrap();
    let header_rows: Vec<Vec<Header<'_>>> = vec![
        vec![("a", Some(b"1"))],
        vec![],
        vec![("b", None), ("c", Some(b"a header value long enough"))],
    ];
    let rb = RecordBatch::try_from_iter([
        (
            "key",
            Arc::new(StringArray::from(vec![Some("k0"), None, Some("k2")])) as ArrayRef,
        ),
        (
            "value",
            Arc::new(arrow_array::BinaryArray::from(vec![
                Some(&b"first"[..]),
                Some(b"second value"),
                None,
            ])),
        ),
        ("partition", Arc::new(Int32Array::from(vec![1, 0, 1]))),
        (
            "timestamp",
            Arc::new(Int64Array::from(vec![1000, 2000, 3000])),
        ),
        ("headers", Arc::new(headers_column(&header_rows))),
    ])
    .unwrap();
    let delivery = arrow::send_record_batch(&producer, "arrow", &rb)
        .await
        .unwrap();
    assert_eq!(delivery.records(), 3);
    delivery.wait().await.unwrap();

    // A column of a type that is not bytes is refused, before anything is sent.
    let wrong =
        RecordBatch::try_from_iter([("value", Arc::new(Int32Array::from(vec![1])) as ArrayRef)])
            .unwrap();
    let err = arrow::send_record_batch(&producer, "arrow", &wrong)
        .await
        .unwrap_err();
    assert!(
        matches!(err, spate::Error::Format(FormatError::Arrow(ref m)) if m.contains("Int32")),
        "{err}"
    );
    producer.close().await.unwrap();

    let mut consumer = Consumer::new(ConsumerConfig::new(&cluster.bootstrap()))
        .await
        .unwrap();
    consumer
        .assign(&[
            ("arrow", 0, Offset::Beginning),
            ("arrow", 1, Offset::Beginning),
        ])
        .unwrap();
    let mut got = Vec::new();
    while got.len() < 3 {
        let b = consumer.next_batch().await.unwrap();
        let rb = from_columnar(b.batch()).unwrap();
        for i in 0..rb.num_rows() {
            let ts = rb
                .column(1)
                .as_primitive::<TimestampMillisecondType>()
                .value(i);
            let batch = b.batch();
            got.push((
                ts,
                b.partition(),
                batch.key(i).map(<[u8]>::to_vec),
                batch.value(i).map(<[u8]>::to_vec),
                batch
                    .headers(i)
                    .map(|(k, v)| (k.to_vec(), v.map(<[u8]>::to_vec)))
                    .collect::<Vec<_>>(),
            ));
        }
    }
    got.sort();
    let h = |rows: &[(&str, Option<&[u8]>)]| {
        rows.iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.map(<[u8]>::to_vec)))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        got,
        vec![
            (
                1000,
                1,
                Some(b"k0".to_vec()),
                Some(b"first".to_vec()),
                h(&header_rows[0])
            ),
            (
                2000,
                0,
                None,
                Some(b"second value".to_vec()),
                h(&header_rows[1])
            ),
            (3000, 1, Some(b"k2".to_vec()), None, h(&header_rows[2])),
        ]
    );
}
