//! The pipeline runner. It plans chunks, copies them in parallel through
//! bounded channels (reader → writer), checkpoints every batch on the
//! target, and resumes an interrupted run where its checkpoints say. It
//! knows connectors only through the `Source` and `Target` traits.

mod plan;
mod progress;
mod runner;
mod shutdown;

pub use plan::{ColumnPlan, PlanReport, TablePlan, plan};
pub use progress::{Progress, TableProgress};
pub use runner::{RunSummary, TableSummary, run};
pub use shutdown::Shutdown;
