//! The headers DMP puts on its messages, so that a consumer can route and
//! a restarted target can tell where it stands without reading bodies.

/// The pipeline that published the message.
pub const PIPELINE: &str = "Dmp-Pipeline";
/// The table, as `SCHEMA.TABLE` or `TABLE`.
pub const TABLE: &str = "Dmp-Table";
/// The envelope's `op`: `r`, `c`, `u`, `d`, `t`.
pub const OP: &str = "Dmp-Op";
/// Where the source streams again from right after this change (a
/// position as JSON): the last such message of a pipeline is where its
/// change stream resumes.
pub const POSITION: &str = "Dmp-Position";
/// The version of the table's schema the row follows (see `_schema`
/// subjects).
pub const SCHEMA_VERSION: &str = "Dmp-Schema-Version";
/// JetStream's message id.
pub const MESSAGE_ID: &str = "Nats-Msg-Id";
/// The id of the change published just before this one by the same
/// change stream (empty for its first): a restarted target follows the
/// chain to find where it is unbroken.
pub const PREVIOUS: &str = "Dmp-Previous";
