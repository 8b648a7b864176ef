//! Dead letters: the groups (anyone who may watch), the rows themselves
//! (operators: they are row data), replay and purge.

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::pipelines::{idle, load};
use super::{App, Body, Caller, Query, json_or_default};
use crate::auth::Role;
use crate::error::{Result, ServeError};
use dmp_engine::{ReplayOptions, Shutdown};
use dmp_state::{StateStore, dead_letter_groups};

#[derive(Debug, Serialize, ToSchema)]
pub struct Group {
    pub table: String,
    pub stage: String,
    pub rows: usize,
    /// The most frequent error; empty for viewers, since an error may
    /// quote the row (PostgreSQL's "Failing row contains (…)", a CSV
    /// line's first KiB).
    pub top_error: String,
    pub top_error_rows: usize,
}

#[utoipa::path(get, path = "/api/v1/pipelines/{name}/dead-letters", tag = "dead letters",
    params(("name" = String, Path)), responses((status = 200, body = [Group]), (status = 404)))]
pub async fn groups(
    State(app): State<App>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Vec<Group>>> {
    let pipeline = load(&app, &name)?;
    let store = StateStore::for_pipeline(&pipeline)?;
    let reads_rows = caller.role() >= Some(Role::Operator);
    let groups = dead_letter_groups(&store.dead_letters(&name)?)
        .into_iter()
        .map(|g| Group {
            table: g.table,
            stage: g.stage,
            rows: g.rows,
            top_error: if reads_rows {
                g.top_error
            } else {
                String::new()
            },
            top_error_rows: g.top_error_rows,
        })
        .collect();
    Ok(Json(groups))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RowsQuery {
    /// Only this table's rows.
    pub table: Option<String>,
    /// At most this many, oldest first (default 100).
    pub limit: Option<usize>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Letter {
    pub id: i64,
    pub table: String,
    pub stage: String,
    pub error: String,
    pub row: serde_json::Value,
    pub position: serde_json::Value,
    pub plugins: String,
    pub at: String,
}

#[utoipa::path(get, path = "/api/v1/pipelines/{name}/dead-letters/rows", tag = "dead letters",
    params(("name" = String, Path), RowsQuery), responses((status = 200, body = [Letter]), (status = 404)))]
pub async fn rows(
    State(app): State<App>,
    Path(name): Path<String>,
    Query(q): Query<RowsQuery>,
) -> Result<Json<Vec<Letter>>> {
    let pipeline = load(&app, &name)?;
    let store = StateStore::for_pipeline(&pipeline)?;
    let letters = store
        .dead_letters(&name)?
        .into_iter()
        .filter(|d| q.table.as_ref().is_none_or(|t| &d.table == t))
        .take(q.limit.unwrap_or(100).min(10_000))
        .map(|d| Letter {
            id: d.id,
            table: d.table,
            stage: d.stage,
            error: d.error,
            row: d.row,
            position: d.position,
            plugins: d.plugins,
            at: d.created_at,
        })
        .collect();
    Ok(Json(letters))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Selection {
    /// Only this table's rows.
    pub table: Option<String>,
    /// Only these rows (their `id`).
    #[serde(default)]
    pub ids: Vec<i64>,
    /// Purge: every row (needed when neither table nor ids is given).
    #[serde(default)]
    pub all: bool,
}

#[utoipa::path(post, path = "/api/v1/pipelines/{name}/dead-letters/replay", tag = "dead letters",
    params(("name" = String, Path)), request_body(content = Selection, description = "optional: all rows when empty"),
    responses((status = 200, body = serde_json::Value, description = "per table: replayed, still failing and the new errors"),
        (status = 404), (status = 409, description = "the pipeline is running")))]
pub async fn replay(
    State(app): State<App>,
    caller: Caller,
    Path(name): Path<String>,
    Body(body): Body,
) -> Result<Json<serde_json::Value>> {
    let selection: Selection = json_or_default(&body)?;
    let outcome = async {
        let pipeline = load(&app, &name)?;
        idle(&app, &name, "replay its dead letters")?;
        let store = StateStore::for_pipeline(&pipeline)?;
        let _lease = store.lease(&name)?;
        let (source, target) = dmp_engine::open_pipeline(&*app.connectors, &pipeline)?;
        let options = ReplayOptions {
            table: selection.table.clone(),
            ids: selection.ids.clone(),
        };
        let span = tracing::info_span!("replay", pipeline = %name);
        let summary = tracing::Instrument::instrument(
            dmp_engine::replay(
                &pipeline,
                &store,
                source,
                target,
                &options,
                &Shutdown::new(),
            ),
            span,
        )
        .await?;
        serde_json::to_value(&summary)
            .map_err(|e| ServeError::BadRequest(format!("the replay as JSON: {e}")))
    }
    .await;
    caller.audit(&app, "dead_letters.replay", &name, &outcome, |summary| {
        Some(format!(
            "{} replayed, {} still failing",
            summary["replayed"], summary["still_failing"]
        ))
    });
    Ok(Json(outcome?))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Purged {
    pub purged: u64,
}

#[utoipa::path(post, path = "/api/v1/pipelines/{name}/dead-letters/purge", tag = "dead letters",
    params(("name" = String, Path)), request_body = Selection,
    responses((status = 200, body = Purged), (status = 400, description = "no selection"), (status = 404), (status = 409)))]
pub async fn purge(
    State(app): State<App>,
    caller: Caller,
    Path(name): Path<String>,
    Body(body): Body,
) -> Result<Json<Purged>> {
    let selection: Selection = json_or_default(&body)?;
    let outcome = (|| {
        let pipeline = load(&app, &name)?;
        if !selection.all && selection.table.is_none() && selection.ids.is_empty() {
            return Err(ServeError::BadRequest(
                "request body: say which rows: {\"table\": …}, {\"ids\": […]} or {\"all\": true}"
                    .into(),
            ));
        }
        idle(&app, &name, "purge its dead letters")?;
        let store = StateStore::for_pipeline(&pipeline)?;
        let _lease = store.lease(&name)?;
        Ok(store.purge_dead_letters(&name, selection.table.as_deref(), &selection.ids)? as u64)
    })();
    caller.audit(&app, "dead_letters.purge", &name, &outcome, |n| {
        Some(format!("{n} purged"))
    });
    Ok(Json(Purged { purged: outcome? }))
}
