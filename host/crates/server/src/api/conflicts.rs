//! Two-way sync conflicts: the entries both sides logged (anyone who may
//! watch; the rows in them only for operators, as they are row data), one
//! entry, and resolving a parked one by choosing a side (operators). Each
//! call opens both sides as `dmp conflicts` does; a resolution is the
//! sync's own write, so it is safe while the sync runs.

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::pipelines::load;
use super::{App, Body, Caller, Query};
use crate::auth::Role;
use crate::error::{Result, ServeError};
use dmp_contract::EntryId;
use dmp_contract::conflict::Side;
use dmp_engine::{EntryView, ResolveSummary, RowOutcome, Sides, entry_view};

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Every entry (settled by the policy, parked, resolved); by default
    /// only those parked and not resolved yet.
    #[serde(default)]
    pub all: bool,
}

/// Both sides of pipeline `name`, which must be a two-way sync.
fn sides(app: &App, name: &str) -> Result<Sides> {
    let pipeline = load(app, name)?;
    Ok(Sides::open(&*app.connectors, &pipeline)?)
}

/// An entry's name from the URL (`a:7`); 400 when it names none.
fn entry_id(text: &str) -> Result<EntryId> {
    Ok(text.parse::<EntryId>()?)
}

/// Whether `caller` may read row data (the remote change's rows and the
/// local row then): operators and admins.
fn reads_rows(caller: &Caller) -> bool {
    caller.role() >= Some(Role::Operator)
}

#[utoipa::path(get, path = "/api/v1/pipelines/{name}/conflicts", tag = "conflicts",
    params(("name" = String, Path), ListQuery),
    responses((status = 200, body = [serde_json::Value],
            description = "the entries of both sides' logs, oldest first: id (`a:7`: the side whose log holds it and its number), side, log_id, pipeline, table_name, key, kind, decision, remote_side, remote_commit_time, logged_at, resolution, resolved_at; for operators also remote_old, remote_new and local_row"),
        (status = 400, description = "the pipeline is no two-way sync"), (status = 404),
        (status = 502, description = "a side could not be reached")))]
pub async fn list(
    State(app): State<App>,
    caller: Caller,
    Path(name): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<EntryView>>> {
    let sides = sides(&app, &name)?;
    let with_rows = reads_rows(&caller);
    let views = sides
        .entries(q.all)
        .await?
        .into_iter()
        .map(|(side, e)| entry_view(side, e, with_rows))
        .collect();
    Ok(Json(views))
}

#[utoipa::path(get, path = "/api/v1/pipelines/{name}/conflicts/{id}", tag = "conflicts",
    params(("name" = String, Path), ("id" = String, Path, description = "`a:7` or `b:7`")),
    responses((status = 200, body = serde_json::Value, description = "the entry, as the list shows it"),
        (status = 400, description = "a malformed id, or the pipeline is no two-way sync"),
        (status = 404, description = "no such pipeline or entry"), (status = 502)))]
pub async fn show(
    State(app): State<App>,
    caller: Caller,
    Path((name, id)): Path<(String, String)>,
) -> Result<Json<EntryView>> {
    let id = entry_id(&id)?;
    let sides = sides(&app, &name)?;
    let entry = sides.find(id).await?;
    Ok(Json(entry_view(id.side, entry, reads_rows(&caller))))
}

/// The side whose row both keep.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SideChoice {
    A,
    B,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Choice {
    pub side: SideChoice,
}

#[utoipa::path(post, path = "/api/v1/pipelines/{name}/conflicts/{id}/resolve", tag = "conflicts",
    params(("name" = String, Path), ("id" = String, Path, description = "`a:7` or `b:7`")),
    request_body = Choice,
    responses((status = 200, body = serde_json::Value,
            description = "what was done: id, table, key, side (chosen), other_side, row (`written` to the other side, or `deleted` there), marked_on_side, marked_on_other_side"),
        (status = 400, description = "a malformed id or body, or the pipeline is no two-way sync"),
        (status = 404, description = "no such pipeline or entry"),
        (status = 409, description = "the entry was not parked, or is resolved already"),
        (status = 502)))]
pub async fn resolve(
    State(app): State<App>,
    caller: Caller,
    Path((name, id)): Path<(String, String)>,
    Body(body): Body,
) -> Result<Json<ResolveSummary>> {
    let outcome = async {
        let choice: Choice = serde_json::from_slice(&body).map_err(|e| {
            ServeError::BadRequest(format!(
                "request body: {e}; expected {{\"side\": \"a\"}} or {{\"side\": \"b\"}}"
            ))
        })?;
        let side = match choice.side {
            SideChoice::A => Side::A,
            SideChoice::B => Side::B,
        };
        let id = entry_id(&id)?;
        let sides = sides(&app, &name)?;
        let span = tracing::info_span!("resolve", pipeline = %name, conflict = %id);
        let summary = tracing::Instrument::instrument(sides.resolve(id, side), span).await?;
        tracing::info!(pipeline = %name, conflict = %id, side = summary.side, "conflict resolved");
        Ok::<_, ServeError>(summary)
    }
    .await;
    caller.audit(&app, "conflicts.resolve", &name, &outcome, |s| {
        let row = match s.row {
            RowOutcome::Written => "written to",
            RowOutcome::Deleted => "deleted on",
        };
        Some(format!(
            "{} resolved by side {}: its row {row} side {}",
            s.id, s.side, s.other_side
        ))
    });
    Ok(Json(outcome?))
}
