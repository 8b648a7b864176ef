//! The data model every connector and the engine share: types, values, schemas,
//! rows, changes, batches and positions. No I/O lives here; the WIT contract of
//! the transform runtime mirrors these types one to one.

mod batch;
pub mod canonical;
mod data_type;
mod decimal;
mod infer;
pub mod json;
mod schema;
mod selection;
mod temporal;
mod value;

pub use batch::{
    Batch, CURSOR_CHUNK, Change, ChangeBatch, Checkpoint, Chunk, Position, REPAIR_CHUNK,
    REPLAY_CHUNK, Reject, RejectStage, Row, STREAM_CHECKPOINT, TableChanges,
};
pub use data_type::DataType;
pub use decimal::Decimal;
pub use infer::{infer_text_type, widen};
pub use schema::{Column, ForeignKey, Index, TableSchema};
pub use selection::TableSelection;
pub use value::{Value, ValueError};
pub(crate) use value::{decode_hex, encode_hex};
