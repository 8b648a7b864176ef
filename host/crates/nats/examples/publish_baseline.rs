//! The baseline of `bench/nats.sh`: a plain async-nats publish loop. Reads
//! every message of stream FROM (the payloads DMP encoded), holds them in
//! memory, then publishes them to stream TO with ids and WINDOW
//! acknowledgements in flight, and prints the messages per second of the
//! publishing alone.
//!
//!   cargo run --release -p dmp-nats --example publish_baseline -- nats://127.0.0.1:4222 FROM TO 256

use std::time::Instant;

use async_nats::jetstream::{self, consumer::push, stream};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, from, to, window] = args.as_slice() else {
        return Err("usage: publish_baseline URL FROM TO WINDOW".into());
    };
    let window: usize = window.parse()?;
    let client = async_nats::connect(url.as_str()).await?;
    let js = jetstream::new(client.clone());
    let source = js.get_stream(from).await?;
    let consumer = source
        .create_consumer(push::OrderedConfig {
            deliver_subject: client.new_inbox(),
            ..Default::default()
        })
        .await?;
    let mut payloads = Vec::new();
    let mut messages = consumer.messages().await?;
    while let Some(message) = messages.next().await {
        let message = message?;
        let pending = message.info()?.pending;
        payloads.push((message.subject.to_string(), message.payload.clone()));
        if pending == 0 {
            break;
        }
    }
    let subject_prefix = format!("{to}.");
    js.create_stream(stream::Config {
        name: to.clone(),
        subjects: vec![format!("{to}.>")],
        ..Default::default()
    })
    .await?;
    let started = Instant::now();
    let mut in_flight = FuturesUnordered::new();
    for (i, (subject, payload)) in payloads.iter().enumerate() {
        if in_flight.len() >= window
            && let Some(ack) = in_flight.next().await
        {
            let _: async_nats::jetstream::publish::PublishAck = ack?;
        }
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", format!("baseline:{i}").as_str());
        let subject = format!("{subject_prefix}{}", subject.replace('.', "_"));
        let ack = js
            .publish_with_headers(subject, headers, payload.clone())
            .await?;
        in_flight.push(ack.into_future());
    }
    while let Some(ack) = in_flight.next().await {
        ack?;
    }
    let secs = started.elapsed().as_secs_f64();
    #[allow(clippy::cast_precision_loss)]
    let rate = payloads.len() as f64 / secs;
    println!(
        "{} messages in {secs:.2} s: {rate:.0} msg/s",
        payloads.len()
    );
    Ok(())
}
