//! Reads a topic partition's whole log straight over the Kafka protocol and
//! sorts its messages by the broker's own transaction markers: committed
//! (or written outside any transaction), aborted, and still open.
//!
//! A `read_committed` client skips aborted messages only when the broker's
//! Fetch response lists the aborted transactions, and the broker with
//! transactions that the tests can run (tansu) lists none. The commit and
//! abort markers are in the log all the same: this reader goes by them, as
//! a broker's list would.

use std::{
    collections::BTreeMap,
    io::{Read, Write},
    net::TcpStream,
    time::Duration,
};

use kafka_protocol::{
    messages::{
        fetch_request::{FetchPartition, FetchTopic},
        ApiKey, FetchRequest, FetchResponse, RequestHeader, ResponseHeader, TopicName,
    },
    protocol::{Decodable, Encodable, HeaderVersion, StrBytes},
    records::RecordBatchDecoder,
};

/// Fetch v11: topics by name, not yet the flexible encoding.
const FETCH_VERSION: i16 = 11;

/// One message of the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
}

/// A partition's messages by the fate of their transaction.
#[derive(Debug, Default)]
pub struct Log {
    /// Committed, or written outside a transaction, in log order of their
    /// commit.
    pub committed: Vec<Message>,
    pub aborted: Vec<Message>,
    /// In a transaction with no marker yet.
    pub open: Vec<Message>,
}

/// Reads partition `partition` of `topic` from its start to its high
/// watermark; `brokers` is a bootstrap list whose first broker leads every
/// partition (a one-node test broker). Panics on any protocol error.
pub fn read(brokers: &str, topic: &str, partition: i32) -> Log {
    let address = brokers.split(',').next().expect("a broker");
    let mut stream = TcpStream::connect(address).expect("connecting to the broker");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut log = Log::default();
    // Messages of open transactions, by producer id.
    let mut pending: BTreeMap<i64, Vec<Message>> = BTreeMap::new();
    let mut offset = 0;
    let mut correlation = 0;
    loop {
        correlation += 1;
        let (high_watermark, records) = fetch(&mut stream, correlation, topic, partition, offset);
        if offset >= high_watermark {
            break;
        }
        let mut records = records.unwrap_or_default();
        let sets = RecordBatchDecoder::decode_all(&mut records).expect("decoding record batches");
        let before = offset;
        for record in sets.into_iter().flat_map(|s| s.records) {
            if record.offset < offset {
                continue;
            }
            offset = record.offset + 1;
            if record.control {
                let key = record.key.expect("a control record has a key");
                let kind = i16::from_be_bytes([key[2], key[3]]);
                let done = pending.remove(&record.producer_id).unwrap_or_default();
                match kind {
                    0 => log.aborted.extend(done),
                    1 => log.committed.extend(done),
                    other => panic!("unknown control record type {other}"),
                }
                continue;
            }
            let message = Message {
                offset: record.offset,
                key: record.key.map(|k| k.to_vec()),
                value: record.value.map(|v| v.to_vec()),
            };
            if record.transactional {
                pending.entry(record.producer_id).or_default().push(message);
            } else {
                log.committed.push(message);
            }
        }
        assert!(
            offset > before,
            "no progress at offset {offset} of {high_watermark}"
        );
    }
    log.open = pending.into_values().flatten().collect();
    log.open.sort_by_key(|m| m.offset);
    log
}

/// One Fetch (read uncommitted) from `offset`: the high watermark and the
/// record batches.
fn fetch(
    stream: &mut TcpStream,
    correlation: i32,
    topic: &str,
    partition: i32,
    offset: i64,
) -> (i64, Option<bytes::Bytes>) {
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::Fetch as i16)
        .with_request_api_version(FETCH_VERSION)
        .with_correlation_id(correlation)
        .with_client_id(Some(StrBytes::from_static_str("eddy-test-log-reader")));
    let request = FetchRequest::default()
        .with_replica_id((-1).into())
        .with_max_wait_ms(100)
        .with_min_bytes(1)
        .with_max_bytes(8 << 20)
        .with_isolation_level(0)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(8 << 20)])]);
    let mut body = bytes::BytesMut::new();
    header
        .encode(&mut body, FetchRequest::header_version(FETCH_VERSION))
        .unwrap();
    request.encode(&mut body, FETCH_VERSION).unwrap();
    stream
        .write_all(&(body.len() as i32).to_be_bytes())
        .and_then(|_| stream.write_all(&body))
        .expect("sending a Fetch");
    let mut size = [0; 4];
    stream.read_exact(&mut size).expect("reading a Fetch size");
    let mut response = vec![0; i32::from_be_bytes(size) as usize];
    stream.read_exact(&mut response).expect("reading a Fetch");
    let mut response = bytes::Bytes::from(response);
    let header =
        ResponseHeader::decode(&mut response, FetchResponse::header_version(FETCH_VERSION))
            .expect("decoding a Fetch header");
    assert_eq!(header.correlation_id, correlation);
    let response = FetchResponse::decode(&mut response, FETCH_VERSION).expect("decoding a Fetch");
    assert_eq!(response.error_code, 0, "Fetch failed");
    let data = response
        .responses
        .into_iter()
        .flat_map(|t| t.partitions)
        .find(|p| p.partition_index == partition)
        .expect("the partition in the Fetch response");
    assert_eq!(
        data.error_code, 0,
        "Fetch of {topic}/{partition} failed with error code {}",
        data.error_code
    );
    (data.high_watermark, data.records)
}
