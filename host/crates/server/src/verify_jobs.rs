//! Verifies started through the API run in the background, one at a
//! time per pipeline; the last one's outcome is kept for `GET …/verify`.

use std::sync::Arc;

use serde::Serialize;

use crate::error::{Result, ServeError};
use crate::service::Service;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct VerifyJob {
    /// running | done | failed
    pub state: String,
    pub repair: bool,
    pub started_at: String,
    pub finished_at: Option<String>,
    /// Whether source and target are equal (after the repair, with one).
    pub equal: Option<bool>,
    /// The report: per table, counts and the first differing rows (their
    /// keys and columns, which only operators see).
    #[schema(value_type = Object)]
    pub report: Option<serde_json::Value>,
    pub error: Option<String>,
}

/// Starts verifying (and with `repair`, repairing) `pipeline`.
pub fn start(service: &Arc<Service>, pipeline: dmp_config::Pipeline, repair: bool) -> Result<()> {
    let name = pipeline.name.clone();
    {
        let mut jobs = service
            .verify_jobs
            .lock()
            .map_err(|_| ServeError::Home("verify jobs poisoned by a panic".into()))?;
        if jobs.get(&name).is_some_and(|j| j.state == "running") {
            return Err(ServeError::Conflict(format!(
                "a verify of {name} is running already"
            )));
        }
        jobs.insert(
            name.clone(),
            VerifyJob {
                state: "running".into(),
                repair,
                started_at: crate::store::now(),
                finished_at: None,
                equal: None,
                report: None,
                error: None,
            },
        );
    }
    let service = service.clone();
    let span = tracing::info_span!("verify", pipeline = %name);
    tokio::spawn(tracing::Instrument::instrument(
        async move {
            let options = dmp_verify::VerifyOptions {
                tables: Vec::new(),
                sample_percent: None,
                repair,
                max_listed: 100,
            };
            let outcome = dmp_verify::verify(&*service.connectors, &pipeline, &options).await;
            match &outcome {
                Ok(report) => tracing::info!(equal = report.equal, "verify finished"),
                Err(e) => tracing::error!(error = %e.report(), "verify failed"),
            }
            if let Ok(mut jobs) = service.verify_jobs.lock()
                && let Some(job) = jobs.get_mut(&pipeline.name)
            {
                job.finished_at = Some(crate::store::now());
                match outcome {
                    Ok(report) => {
                        job.state = "done".into();
                        job.equal = Some(report.equal);
                        job.report = serde_json::to_value(&report).ok();
                    }
                    Err(e) => {
                        job.state = "failed".into();
                        job.error = Some(dmp_contract::mask_secrets(&e.report()));
                    }
                }
            }
        },
        span,
    ));
    Ok(())
}

/// The job as a caller who may not see row data sees it: counts only.
pub fn without_rows(mut job: VerifyJob) -> VerifyJob {
    if let Some(tables) = job
        .report
        .as_mut()
        .and_then(|r| r.get_mut("tables"))
        .and_then(serde_json::Value::as_array_mut)
    {
        for table in tables {
            if let Some(t) = table.as_object_mut() {
                t.remove("differences");
                if let Some(repair) = t
                    .get_mut("repair")
                    .and_then(serde_json::Value::as_object_mut)
                {
                    repair.retain(|k, _| !k.contains("row") || k.ends_with("rows"));
                }
            }
        }
    }
    job
}
