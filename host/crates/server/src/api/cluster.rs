//! Who does what of a pipeline run on the cluster (`dmp serve --cluster`):
//! each worker's share and the worker that holds, did or failed each
//! chunk and finish step, or a change stream's holder.

use axum::Json;
use axum::extract::{Path, State};

use super::App;
use super::pipelines::known;
use crate::error::{Result, ServeError};

#[utoipa::path(get, path = "/api/v1/pipelines/{name}/placement", tag = "watch",
    params(("name" = String, Path)),
    responses(
        (status = 200, body = Object, description = "`null` when the cluster runs nothing of the pipeline; else `run`, `workers` (`name`, `rows`, `chunks_done`, `copying`), `work` (`table`, `chunk`, `state`, `worker`, `attempts`, `rows`, `error`: every chunk and finish step a worker took) and `stream` (`worker`, `epoch`, `changes`, `lag_ms`)"),
        (status = 404, description = "no such pipeline, or the service runs no cluster"),
        (status = 502, description = "the cluster cannot be read")))]
pub async fn placement(
    State(app): State<App>,
    Path(name): Path<String>,
) -> Result<Json<Option<dmp_engine::Placement>>> {
    known(&app, &name)?;
    let Some(launcher) = &app.launcher else {
        return Err(ServeError::NotFound(
            "this service runs no cluster (start it with `dmp serve --cluster nats://…`)".into(),
        ));
    };
    Ok(Json(launcher.placement(&name).await?))
}
