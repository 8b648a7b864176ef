//! Leases on a private nats-server: one holder at a time, renewals keep
//! it, a holder that stops renewing loses it to the next within the lease
//! time, with a larger epoch, and learns it was deposed.

use std::time::{Duration, Instant};

use dmp_cluster::Leases;
use dmp_test_servers::nats;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_holder_at_a_time_and_a_silent_one_is_replaced() {
    let client = async_nats::connect(nats().url()).await.expect("connects");
    let jetstream = async_nats::jetstream::new(client);
    // Long enough that a busy machine still renews in time (a renewal
    // every second, two to spare).
    let ttl = Duration::from_secs(3);
    let leases = Leases::open(&jetstream, "dmp_test_leases", ttl, 1)
        .await
        .expect("bucket");
    assert_eq!(leases.renew_every(), ttl / 3);

    let mut first = leases
        .acquire("stream.p", "worker-a")
        .await
        .expect("asks")
        .expect("free: taken");
    assert!(
        leases
            .acquire("stream.p", "worker-b")
            .await
            .expect("asks")
            .is_none()
    );
    // Renewed past the lease time, it stays with its holder.
    for _ in 0..4 {
        tokio::time::sleep(leases.renew_every()).await;
        assert!(leases.renew(&mut first).await.expect("renews"));
    }
    assert_eq!(
        leases.holder("stream.p").await.expect("reads"),
        Some(("worker-a".to_string(), first.epoch))
    );

    // worker-a goes silent: worker-b takes over within the lease time
    // (and the server's expiry pass).
    let silent = Instant::now();
    let second = loop {
        if let Some(lease) = leases.acquire("stream.p", "worker-b").await.expect("asks") {
            break lease;
        }
        assert!(silent.elapsed() < ttl * 5, "the lease was not freed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(silent.elapsed() >= ttl / 2, "taken over too early");
    assert!(second.epoch > first.epoch, "epochs grow");
    // The deposed holder learns it at its next renewal.
    assert!(!leases.renew(&mut first).await.expect("asks"));
    assert_eq!(
        leases.holder("stream.p").await.expect("reads"),
        Some(("worker-b".to_string(), second.epoch))
    );

    // A holder that stops cleanly lets go at once, renewed or not: the
    // next takes it without waiting for the lease time.
    let mut third = leases
        .acquire("stream.q", "worker-a")
        .await
        .expect("asks")
        .expect("free");
    assert!(leases.renew(&mut third).await.expect("renews"));
    leases.release(&third).await.expect("lets go");
    assert!(
        leases
            .acquire("stream.q", "worker-b")
            .await
            .expect("asks")
            .is_some(),
        "a released lease is free at once"
    );
}
