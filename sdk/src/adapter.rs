//! Runs a [`Transform`] behind the WIT `transformer` resource: decodes
//! batches into rows, collects outcomes, encodes the output columnar.

use std::cell::RefCell;

use crate::bindings::dmp::transform::types::{
    Batch, BatchResult, OutputColumn, Reject, TableSchema,
};
use crate::bindings::exports::dmp::transform::transform::{GuestTransformer, Transformer};
use crate::cell::{ColumnBuilder, cell, value_cell};
use crate::row::{Input, Layout, Row};
use crate::{Config, Outcome, Transform};

/// Logs a panic's message as an error before the panic ends in a bare
/// trap, so the host can say why.
pub(crate) fn log_panics() {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            crate::log(crate::Level::Error, &info.to_string())
        }))
    });
}

/// The WIT resource wrapping a plugin's [`Transform`].
pub struct Adapter<T: Transform> {
    transform: RefCell<T>,
    input: TableSchema,
    layout: Layout,
}

impl<T: Transform> GuestTransformer for Adapter<T> {
    fn open(config: Vec<(String, String)>, input: TableSchema) -> Result<Transformer, String> {
        log_panics();
        let transform = T::open(&Config::new(config), &input)?;
        let output = transform.output_schema(&input);
        Ok(Transformer::new(Adapter {
            layout: Layout::new(&input, output),
            transform: RefCell::new(transform),
            input,
        }))
    }

    fn output_schema(&self) -> TableSchema {
        self.layout.schema.clone()
    }

    fn process(&self, batch: Batch) -> Result<BatchResult, String> {
        let mut transform = self.transform.borrow_mut();
        if let Some(result) = transform.process_batch(&batch, (&self.input, &self.layout.schema)) {
            return result;
        }
        let input = Input {
            schema: &self.input,
            batch: &batch,
        };
        let rows = usize::try_from(batch.len).unwrap_or(0);
        let mut emitted: Vec<(u32, Vec<Option<crate::Value>>)> = Vec::with_capacity(rows);
        let mut rejects = Vec::new();
        for index in 0..rows {
            let origin = u32::try_from(index).unwrap_or(u32::MAX);
            let mut row = Row::new(&input, &self.layout, index);
            let outcome = transform.process(&mut row);
            match outcome {
                Outcome::Keep => match row.error {
                    Some(reason) => rejects.push(Reject {
                        row: origin,
                        reason,
                    }),
                    None => emitted.push((origin, row.values)),
                },
                Outcome::Drop => {}
                // A bad value in any copy refuses the whole input row.
                Outcome::Many => match row.error {
                    Some(reason) => rejects.push(Reject {
                        row: origin,
                        reason,
                    }),
                    None => emitted.extend(row.copies.into_iter().map(|values| (origin, values))),
                },
                Outcome::Reject(reason) => rejects.push(Reject {
                    row: origin,
                    reason,
                }),
            }
        }
        self.encode(&input, emitted, rejects)
    }
}

impl<T: Transform> Adapter<T> {
    fn encode(
        &self,
        input: &Input<'_>,
        emitted: Vec<(u32, Vec<Option<crate::Value>>)>,
        rejects: Vec<Reject>,
    ) -> Result<BatchResult, String> {
        let mut columns = Vec::with_capacity(self.layout.schema.columns.len());
        for (out, column) in self.layout.schema.columns.iter().enumerate() {
            let source = self.layout.source[out];
            let touched = emitted
                .iter()
                .any(|(_, values)| values.get(out).is_some_and(Option::is_some));
            if let (Some(source), false) = (source, touched) {
                columns.push(OutputColumn::Unchanged(
                    u32::try_from(source).unwrap_or(u32::MAX),
                ));
                continue;
            }
            let mut builder = ColumnBuilder::new(&column.data_type, emitted.len());
            for (origin, values) in &emitted {
                let cell = match (values.get(out).and_then(Option::as_ref), source) {
                    (Some(value), _) => value_cell(value),
                    (None, Some(source)) => cell(&input.batch.columns[source], *origin as usize),
                    (None, None) => crate::Cell::Null,
                };
                builder
                    .push(cell)
                    .map_err(|e| format!("output column {}: {e}", column.name))?;
            }
            columns.push(OutputColumn::Values(builder.finish()));
        }
        Ok(BatchResult {
            len: u32::try_from(emitted.len()).map_err(|_| "too many output rows".to_string())?,
            columns,
            origin: emitted.iter().map(|(origin, _)| *origin).collect(),
            rejects,
        })
    }
}
