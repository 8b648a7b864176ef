//! MySQL / MariaDB (placeholder being written).

use async_trait::async_trait;
use std::sync::Arc;

use crate::config::Endpoint;
use crate::connectors::Source;
use crate::connectors::{BatchStream, RejectSink, SourceOptions, Start, Target, TargetOptions};
use crate::error::{Error, Result};
use crate::model::{Batch, Checkpoint, Chunk, Column, Position, TableSchema, TableSelection};

pub(crate) struct MysqlSource;
pub(crate) struct MysqlTarget;

impl MysqlSource {
    pub(crate) fn open(_endpoint: &Endpoint, _options: SourceOptions) -> Result<Self> {
        Err(Error::Unsupported("mysql source: being written".into()))
    }
}

impl MysqlTarget {
    pub(crate) fn open(_endpoint: &Endpoint, _options: TargetOptions) -> Result<Self> {
        Err(Error::Unsupported("mysql target: being written".into()))
    }
}

#[async_trait]
impl Source for MysqlSource {
    async fn discover(&self, _selection: &TableSelection) -> Result<Vec<TableSchema>> {
        Ok(Vec::new())
    }
    async fn plan_snapshot(&self, _table: &TableSchema, _chunk_rows: u64) -> Result<Vec<Chunk>> {
        Ok(Vec::new())
    }
    fn read_chunk(&self, _t: Arc<TableSchema>, _c: Chunk, _r: Position, _b: usize) -> BatchStream {
        tokio::sync::mpsc::channel(1).1
    }
}

#[async_trait]
impl Target for MysqlTarget {
    fn column_type(&self, _column: &Column) -> String {
        String::new()
    }
    async fn prepare(&self, _tables: &[Arc<TableSchema>], _start: Start) -> Result<()> {
        Ok(())
    }
    async fn checkpoints(&self) -> Result<Vec<Checkpoint>> {
        Ok(Vec::new())
    }
    async fn write(&self, _b: Batch, _c: Checkpoint, _r: Arc<dyn RejectSink>) -> Result<u64> {
        Ok(0)
    }
    async fn finish_table(&self, _table: &TableSchema) -> Result<()> {
        Ok(())
    }
}
