//! Plugins of a pipeline: versions, upload (admins), roll back (admins).

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::pipelines::load;
use super::{App, Body, Caller, json_or_default};
use crate::error::{Result, ServeError};
use crate::plugins::{self, PluginView};

#[utoipa::path(get, path = "/api/v1/pipelines/{name}/plugins", tag = "plugins",
    params(("name" = String, Path)), responses((status = 200, body = [PluginView]), (status = 404)))]
pub async fn list(
    State(app): State<App>,
    Path(name): Path<String>,
) -> Result<Json<Vec<PluginView>>> {
    let pipeline = load(&app, &name)?;
    Ok(Json(plugins::list(&app, &pipeline)?))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Uploaded {
    pub version: i64,
}

#[utoipa::path(post, path = "/api/v1/pipelines/{name}/plugins/{plugin}", tag = "plugins",
    params(("name" = String, Path), ("plugin" = String, Path, description = "the plugin's file name without .wasm")),
    request_body(content = Vec<u8>, content_type = "application/wasm", description = "the component"),
    responses((status = 201, body = Uploaded, description = "checked against the pipeline's tables and published; a running pipeline swaps it in at its next batch"),
        (status = 400, description = "refused, with the reason"), (status = 404), (status = 413)))]
pub async fn upload(
    State(app): State<App>,
    caller: Caller,
    Path((name, plugin)): Path<(String, String)>,
    request: Request,
) -> Result<Response> {
    let _one = app.plugin_lock.lock().await;
    let outcome = async {
        let pipeline = load(&app, &name)?;
        let limit = plugins::max_upload(&pipeline, &plugin)?;
        let bytes = axum::body::to_bytes(request.into_body(), limit)
            .await
            .map_err(|_| {
                ServeError::TooLarge(format!(
                    "the plugin is larger than its transform's max_plugin_mb ({} MiB)",
                    limit / (1024 * 1024)
                ))
            })?;
        if bytes.is_empty() {
            return Err(ServeError::BadRequest(
                "request body: empty (send the .wasm component)".into(),
            ));
        }
        plugins::upload(&app, &pipeline, &plugin, &bytes, caller.who()).await
    }
    .await;
    let target = format!("{name}/{plugin}");
    caller.audit(&app, "plugin.upload", &target, &outcome, |v| {
        Some(format!("version {v}"))
    });
    Ok((StatusCode::CREATED, Json(Uploaded { version: outcome? })).into_response())
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollBack {
    pub version: i64,
}

#[utoipa::path(post, path = "/api/v1/pipelines/{name}/plugins/{plugin}/rollback", tag = "plugins",
    params(("name" = String, Path), ("plugin" = String, Path)), request_body = RollBack,
    responses((status = 200, body = Uploaded), (status = 404)))]
pub async fn rollback(
    State(app): State<App>,
    caller: Caller,
    Path((name, plugin)): Path<(String, String)>,
    Body(body): Body,
) -> Result<Json<Uploaded>> {
    let _one = app.plugin_lock.lock().await;
    let request: RollBack = json_or_default(&body)?;
    let outcome = load(&app, &name)
        .and_then(|pipeline| plugins::roll_back(&app, &pipeline, &plugin, request.version));
    let target = format!("{name}/{plugin}");
    caller.audit(&app, "plugin.rollback", &target, &outcome, |()| {
        Some(format!("version {}", request.version))
    });
    outcome?;
    Ok(Json(Uploaded {
        version: request.version,
    }))
}
