//! Verify through the API: start one (optionally repairing), read the
//! outcome.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::Response;
use serde::Deserialize;
use utoipa::ToSchema;

use super::pipelines::load;
use super::{App, Body, Caller, accepted, json_or_default};
use crate::auth::Role;
use crate::error::{Result, ServeError};
use crate::verify_jobs::{self, VerifyJob, without_rows};

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// Rewrite the differing rows in the target, then verify again.
    #[serde(default)]
    pub repair: bool,
}

#[utoipa::path(post, path = "/api/v1/pipelines/{name}/verify", tag = "verify",
    params(("name" = String, Path)), request_body(content = VerifyRequest, description = "optional"),
    responses((status = 202, description = "started; GET …/verify gives the outcome"), (status = 404), (status = 409)))]
pub async fn start(
    State(app): State<App>,
    caller: Caller,
    Path(name): Path<String>,
    Body(body): Body,
) -> Result<Response> {
    let request: VerifyRequest = json_or_default(&body)?;
    let outcome =
        load(&app, &name).and_then(|pipeline| verify_jobs::start(&app, pipeline, request.repair));
    let action = if request.repair {
        "verify.repair"
    } else {
        "verify.start"
    };
    caller.audit(&app, action, &name, &outcome, |()| None);
    outcome?;
    Ok(accepted(serde_json::json!({ "state": "running" })))
}

#[utoipa::path(get, path = "/api/v1/pipelines/{name}/verify", tag = "verify",
    params(("name" = String, Path)),
    responses((status = 200, body = VerifyJob, description = "differing rows only for operators and admins"), (status = 404, description = "no such pipeline, or never verified")))]
pub async fn result(
    State(app): State<App>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<VerifyJob>> {
    super::pipelines::known(&app, &name)?;
    let job = app
        .verify_jobs
        .lock()
        .map_err(|_| ServeError::Home("verify jobs poisoned by a panic".into()))?
        .get(&name)
        .cloned()
        .ok_or_else(|| {
            ServeError::NotFound(format!(
                "pipeline {name} was not verified since the service started"
            ))
        })?;
    if caller.role() >= Some(Role::Operator) {
        Ok(Json(job))
    } else {
        Ok(Json(without_rows(job)))
    }
}
