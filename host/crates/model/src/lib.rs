//! The data model every connector and the engine share: types, values, schemas,
//! rows, changes, batches and positions. No I/O lives here; the WIT contract of
//! the transform runtime mirrors these types one to one.

pub mod assessment;
mod batch;
pub mod canonical;
mod data_type;
mod decimal;
mod expr;
mod infer;
pub mod json;
mod lifecycle;
mod objects;
mod printable;
mod schema;
mod selection;
mod temporal;
mod value;

pub use assessment::{Assessed, ObjectKind, Status};
pub use batch::{
    Batch, CURSOR_CHUNK, Change, ChangeBatch, ChangeOrigin, Checkpoint, Chunk, Fence, Position,
    REPAIR_CHUNK, REPLAY_CHUNK, Reject, RejectStage, Row, STREAM_CHECKPOINT, SchemaDelta,
    TableChanges, WireColumn, WireDecoder, WireFormat, WireRows, is_dmp_table,
};
pub use data_type::DataType;
pub use decimal::Decimal;
pub use expr::{BinaryOp, Carry, Dialect, Expr, Func, SqlExpr};
pub use infer::{infer_text_type, widen};
pub use lifecycle::TablePhase;
pub use objects::{SchemaObjects, Sequence, View, views_in_dependency_order};
pub use printable::printable;
pub use schema::{
    Check, Column, ForeignKey, Identity, Index, Partition, Partitioning, Skipped, TableSchema,
};
pub use selection::TableSelection;
pub use value::{Value, ValueError};
pub use value::{decode_hex, encode_hex};
