//! The first stage's output: partials and watermarks onto the partials
//! topic, through an idempotent producer. A partial goes to its key's
//! partition (the second stage's partition of the key); marks go to every
//! partition, after the partials they cover (one producer keeps a
//! partition's order). Not transactional: a replay may send a partial
//! again, and the second stage keeps one per origin, so it counts once.

use std::time::Duration;

use anyhow::Context;
use eddy_api::spec::ResolvedPartials;
use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    config::ClientConfig,
    consumer::{BaseConsumer, Consumer},
    types::RDKafkaErrorCode,
};

use super::{Mark, Message, Partial};
use crate::{
    engine::partition_of,
    output::sink::{done, kafka::Producer, Flushing, Item, Pushed, Sink},
};

/// How long creating the topic or reading its layout may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// The admin client of the partials topic's cluster.
fn admin(
    partials: &ResolvedPartials,
) -> anyhow::Result<(AdminClient<DefaultClientContext>, ClientConfig)> {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &partials.brokers);
    for (k, v) in &partials.properties {
        config.set(k, v);
    }
    let admin = config
        .create()
        .context("creating a Kafka admin client for the partials topic")?;
    Ok((admin, config))
}

/// Deletes the partials topic (a finished local run: a rerun starts over).
pub async fn delete_topic(partials: &ResolvedPartials) -> anyhow::Result<()> {
    let (admin, _) = admin(partials)?;
    let options = AdminOptions::new().operation_timeout(Some(TIMEOUT));
    let deleted = admin
        .delete_topics(&[&partials.topic], &options)
        .await
        .with_context(|| format!("deleting the partials topic {}", partials.topic))?;
    for outcome in deleted {
        match outcome {
            Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
            Err((name, code)) => anyhow::bail!("deleting the partials topic {name}: {code}"),
        }
    }
    Ok(())
}

/// Creates the partials topic with one partition per job partition, unless
/// it exists; fails if it exists with another number of partitions (the
/// key of a partial decides its partition, as in the job).
pub async fn ensure_topic(partials: &ResolvedPartials, partitions: u32) -> anyhow::Result<()> {
    let (admin, config) = admin(partials)?;
    let topic = NewTopic::new(
        &partials.topic,
        partitions as i32,
        TopicReplication::Fixed(-1),
    );
    let options = AdminOptions::new().operation_timeout(Some(TIMEOUT));
    let created = admin
        .create_topics([&topic], &options)
        .await
        .with_context(|| format!("creating the partials topic {}", partials.topic))?;
    for outcome in created {
        match outcome {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => anyhow::bail!("creating the partials topic {name}: {code}"),
        }
    }
    let consumer: BaseConsumer = config.create()?;
    let topic_name = partials.topic.clone();
    let found = tokio::task::spawn_blocking(move || {
        consumer
            .fetch_metadata(Some(&topic_name), TIMEOUT)
            .map(|m| m.topics().first().map_or(0, |t| t.partitions().len()))
    })
    .await?
    .with_context(|| format!("reading the layout of {}", partials.topic))?;
    if found != partitions as usize {
        anyhow::bail!(
            "the partials topic {} has {found} partitions and the job {partitions}: \
             name another topic in spec.hotKeys.partials.topic, or delete this one",
            partials.topic
        );
    }
    Ok(())
}

/// Writes the first stage's partials and marks.
pub struct PartialsSink {
    topic: String,
    partitions: u32,
    /// The job's state epoch, in every message.
    epoch: u64,
    producer: Producer,
    scratch: Vec<u8>,
}

impl PartialsSink {
    pub fn open(partials: &ResolvedPartials, partitions: u32, epoch: u64) -> anyhow::Result<Self> {
        // Partials and marks go in batches of up to 100 ms (Flink's
        // default buffer timeout between tasks): the merge stage wakes
        // and fetches once per batch rather than per partial, for about a
        // twentieth of the first stage's CPU.
        let ours = [("enable.idempotence", "true"), ("linger.ms", "100")];
        Ok(Self {
            topic: partials.topic.clone(),
            partitions,
            epoch,
            producer: Producer::create(
                &partials.brokers,
                &ours,
                &partials.properties,
                &partials.topic,
            )?,
            scratch: Vec::new(),
        })
    }
}

impl Sink for PartialsSink {
    fn name(&self) -> String {
        format!("partials topic {}", self.topic)
    }

    fn write(&mut self, item: &Item<'_>) -> anyhow::Result<()> {
        let Some(r) = item.result else {
            anyhow::bail!("{}: a result without its fields", self.name());
        };
        let Some(accs) = &r.partial else {
            anyhow::bail!("{}: a result without its accumulators", self.name());
        };
        let message = Message::Partial(Partial {
            origin: r.partition,
            key: r.key.to_string(),
            window: r.window,
            revision: r.revision,
            is_final: r.is_final,
            accs: accs.clone(),
        });
        self.scratch = message.encode(self.epoch);
        let partition = partition_of(&r.key, self.partitions) as i32;
        self.producer.send_to(&self.topic, partition, &self.scratch);
        Ok(())
    }

    fn mark(&mut self, marks: &[Mark]) -> anyhow::Result<()> {
        let bytes = Message::Marks(marks.to_vec()).encode(self.epoch);
        for partition in 0..self.partitions as i32 {
            self.producer.send_to(&self.topic, partition, &bytes);
        }
        Ok(())
    }

    fn remote(&self) -> bool {
        true
    }

    fn flush(&mut self) -> Flushing<'_> {
        done(self.producer.flush(&self.name()))
    }

    fn push(&mut self) -> Pushed<'_> {
        Pushed::Looked(self.producer.delivered(&self.name()))
    }
}
