//! Misbehaves on purpose, as chosen by the `mode` setting, on the rows of
//! tables whose name is in `tables` (all when absent):
//! `loop` never returns, `alloc` allocates without end, `panic` panics,
//! `trap` divides by zero in wasm, `wrong-count` returns too few values in a
//! column, `wrong-type` returns text in an integer column, `fail-open`
//! refuses to open, `refuse` returns an error for the batch, `fanout`
//! returns a thousand copies of every row, `read-file` tries to read
//! `/etc/passwd` (built for WASI it imports the filesystem; the host must
//! refuse it at load time), `big-error` fails the batch with a 1 MiB
//! error, `log-flood` logs 5000 lines of 4 KiB a batch, then keeps its
//! rows.

use dmp_sdk::{
    Batch, BatchResult, Cell, ColumnBuilder, Config, DataType, Outcome, OutputColumn, Row,
    TableSchema, Transform,
};

pub struct Hostile {
    mode: String,
}

impl Transform for Hostile {
    fn open(config: &Config, input: &TableSchema) -> Result<Self, String> {
        let mode = config.require("mode")?.to_string();
        if mode == "fail-open" {
            return Err(format!("hostile plugin refuses table {}", input.name));
        }
        Ok(Hostile { mode })
    }

    fn process(&mut self, row: &mut Row<'_>) -> Outcome {
        if self.mode == "fanout" {
            for _ in 0..1000 {
                row.emit();
            }
            return Outcome::Many;
        }
        Outcome::Keep
    }

    fn process_batch(
        &mut self,
        input: &Batch,
        (schema, _): (&TableSchema, &TableSchema),
    ) -> Option<Result<BatchResult, String>> {
        match self.mode.as_str() {
            "loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "alloc" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "panic" => panic!("hostile plugin panics on a batch of {} rows", input.len),
            "trap" => {
                let zero = std::hint::black_box(0u32);
                Some(Ok(BatchResult {
                    len: 1 / zero,
                    columns: vec![],
                    origin: vec![],
                    rejects: vec![],
                }))
            }
            "refuse" => Some(Err("hostile plugin refuses this batch".into())),
            "big-error" => Some(Err(format!(
                "hostile plugin's big error {}",
                "x".repeat(1 << 20)
            ))),
            "log-flood" => {
                let line = format!("hostile plugin floods the log {}", "y".repeat(4 << 10));
                for _ in 0..5000 {
                    dmp_sdk::log(dmp_sdk::Level::Warn, &line);
                }
                None
            }
            "read-file" => Some(match std::fs::read_to_string("/etc/passwd") {
                Ok(text) => Err(format!("read {} bytes of /etc/passwd", text.len())),
                Err(e) => Err(format!("no filesystem: {e}")),
            }),
            "wrong-count" => {
                let mut columns: Vec<OutputColumn> = (0..schema.columns.len())
                    .map(|i| OutputColumn::Unchanged(i as u32))
                    .collect();
                let mut short = ColumnBuilder::new(&schema.columns[0].data_type, 0);
                let _ = short.push(Cell::Null);
                columns[0] = OutputColumn::Values(short.finish());
                Some(Ok(BatchResult {
                    len: input.len,
                    columns,
                    origin: (0..input.len).collect(),
                    rejects: vec![],
                }))
            }
            "wrong-type" => {
                let mut columns: Vec<OutputColumn> = (0..schema.columns.len())
                    .map(|i| OutputColumn::Unchanged(i as u32))
                    .collect();
                let int_column = schema.columns.iter().position(|c| {
                    matches!(
                        c.data_type,
                        DataType::Int64 | DataType::Int32 | DataType::Int16
                    )
                });
                if let Some(at) = int_column {
                    let mut text = ColumnBuilder::new(&DataType::Text(None), input.len as usize);
                    for _ in 0..input.len {
                        let _ = text.push(Cell::Text("not a number"));
                    }
                    columns[at] = OutputColumn::Values(text.finish());
                }
                Some(Ok(BatchResult {
                    len: input.len,
                    columns,
                    origin: (0..input.len).collect(),
                    rejects: vec![],
                }))
            }
            _ => None,
        }
    }
}

dmp_sdk::export_transform!(Hostile);
