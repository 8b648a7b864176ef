//! Scale-out over NATS JetStream (issue 17, under way): the coordination
//! DMP's workers share, built on JetStream's own durable primitives rather
//! than a protocol of DMP's. So far: leases for the one-of-a-kind work (a
//! run's coordinator, a change stream), each with a fencing epoch.

mod error;
mod lease;

pub use error::{Error, Result};
pub use lease::{Lease, Leases};
