//! A pipeline's change stream at the source: its standing, and dropping
//! what it holds there (admins only: the next stream starts afresh).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use super::pipelines::{idle, load};
use super::{App, Caller};
use crate::error::{Result, ServeError};

#[derive(Debug, Serialize, ToSchema)]
pub struct StreamView {
    /// The position the target holds (applied and committed).
    pub target_position: Option<String>,
    pub source_position: Option<String>,
    pub confirmed_position: Option<String>,
    /// Change log (WAL, binlog) the source keeps for the stream.
    pub retained_bytes: Option<u64>,
}

#[utoipa::path(get, path = "/api/v1/pipelines/{name}/stream", tag = "change stream",
    params(("name" = String, Path)),
    responses((status = 200, body = StreamView), (status = 400, description = "the source has no change stream"), (status = 404)))]
pub async fn status(State(app): State<App>, Path(name): Path<String>) -> Result<Json<StreamView>> {
    let pipeline = load(&app, &name)?;
    let standing = dmp_engine::stream_standing(&*app.connectors, &pipeline).await?;
    Ok(Json(StreamView {
        target_position: standing.target_position,
        source_position: standing.source_position,
        confirmed_position: standing.confirmed_position,
        retained_bytes: standing.retained_bytes,
    }))
}

#[utoipa::path(delete, path = "/api/v1/pipelines/{name}/stream", tag = "change stream",
    params(("name" = String, Path)),
    responses((status = 204, description = "the slot (and publication) dropped at the source"), (status = 404), (status = 409, description = "the pipeline is running")))]
pub async fn drop_stream(
    State(app): State<App>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode> {
    let outcome = async {
        let pipeline = load(&app, &name)?;
        idle(&app, &name, "drop its change stream")?;
        Ok::<_, ServeError>(dmp_engine::drop_stream(&*app.connectors, &pipeline).await?)
    }
    .await;
    caller.audit(&app, "stream.drop", &name, &outcome, |()| None);
    outcome?;
    Ok(StatusCode::NO_CONTENT)
}
