//! Pipelines: list, create, test (validate), show, change, delete, export.
//! Bodies are the pipeline TOML (`Content-Type: application/toml`, or
//! `text/plain`) or JSON `{"toml": "…"}`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{App, Body, Caller};
use crate::definitions::{self, masked_text, name_of, password_set, read_pipeline, unmask};
use crate::error::{Result, ServeError};
use crate::store::RunEntry;

#[derive(Debug, Serialize, ToSchema)]
pub struct PipelineSummary {
    pub name: String,
    pub mode: String,
    /// idle | running | streaming | paused | done | failed | stopped
    pub state: String,
    /// The URLs with literal passwords masked.
    pub source: String,
    pub target: String,
    pub schedule: Option<String>,
    pub rows_per_s: f64,
    pub lag_ms: Option<u64>,
    pub error: Option<String>,
    pub last_run: Option<RunEntry>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointView {
    pub url: String,
    /// A password is set (it is never shown).
    pub password_set: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PipelineView {
    pub name: String,
    pub mode: String,
    pub state: String,
    /// The pipeline's TOML, literal secrets masked, references as written.
    pub toml: String,
    pub source: EndpointView,
    pub target: EndpointView,
    /// The plugin names of its transforms (their file names).
    pub transforms: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Named {
    pub name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonPipeline {
    toml: String,
}

/// The pipeline text of a request body.
fn pipeline_text(headers: &HeaderMap, body: &[u8]) -> Result<String> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ServeError::BadRequest("request body: not UTF-8".into()))?;
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json {
        if text.trim().is_empty() {
            return Err(ServeError::BadRequest(
                "request body: empty (send the pipeline TOML)".into(),
            ));
        }
        return Ok(text.to_string());
    }
    let parsed: JsonPipeline = serde_json::from_str(text).map_err(|e| {
        ServeError::BadRequest(format!(
            "request body: {e} (line {}, column {}); expected {{\"toml\": \"…\"}}",
            e.line(),
            e.column()
        ))
    })?;
    Ok(parsed.toml)
}

/// What the overview shows of a stored pipeline's text.
struct Outline {
    mode: String,
    source: String,
    target: String,
    schedule: Option<String>,
    transforms: Vec<String>,
}

fn outline(text: &str) -> Outline {
    let table: toml::Table = toml::from_str(text).unwrap_or_default();
    let string = |section: &str, key: &str| {
        table
            .get(section)
            .and_then(|s| s.get(key))
            .and_then(toml::Value::as_str)
            .map(str::to_string)
    };
    let transforms = table
        .get("transform")
        .and_then(toml::Value::as_array)
        .map(|all| {
            all.iter()
                .filter_map(|t| t.get("plugin").and_then(toml::Value::as_str))
                .map(crate::plugins::plugin_name)
                .collect()
        })
        .unwrap_or_default();
    Outline {
        mode: string("run", "mode").unwrap_or_else(|| "full".into()),
        source: string("source", "url").unwrap_or_default(),
        target: string("target", "url").unwrap_or_default(),
        schedule: string("run", "every"),
        transforms,
    }
}

#[utoipa::path(get, path = "/api/v1/pipelines", tag = "pipelines",
    responses((status = 200, body = [PipelineSummary], description = "failed ones first, then by name")))]
pub async fn list(State(app): State<App>) -> Result<Json<Vec<PipelineSummary>>> {
    let last = app.store.last_runs()?;
    let mut out = Vec::new();
    for (name, _) in app.store.pipeline_names()? {
        // One pipeline that cannot be read is shown failed, not the list.
        let (text, unreadable) = match app.store.pipeline_text(&name, &app.key) {
            Ok(text) => (masked_text(&text), None),
            Err(e) => (String::new(), Some(e.message())),
        };
        let outline = outline(&text);
        let mut status = app.supervisor.slot(&name).status();
        if let Some(error) = unreadable {
            status.state = "failed".into();
            status.error = Some(error);
        }
        out.push(PipelineSummary {
            mode: outline.mode,
            state: status.state,
            source: outline.source,
            target: outline.target,
            schedule: outline.schedule,
            rows_per_s: status.rows_per_s,
            lag_ms: status.lag.and_then(|l| l.ms),
            error: status.error,
            last_run: last.get(&name).cloned(),
            name,
        });
    }
    out.sort_by_key(|p| (p.state != "failed", p.name.clone()));
    Ok(Json(out))
}

#[utoipa::path(post, path = "/api/v1/pipelines", tag = "pipelines",
    request_body(content = String, content_type = "application/toml", description = "the pipeline file"),
    responses((status = 201, body = Named), (status = 400, description = "the TOML or a setting is wrong; the message names the line"), (status = 409)))]
pub async fn create(
    State(app): State<App>,
    caller: Caller,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response> {
    let outcome = save(&app, &headers, &body, None);
    // A refused pipeline is audited under the name it was posted with.
    let target = match &outcome {
        Ok(name) => name.clone(),
        Err(_) => pipeline_text(&headers, &body)
            .and_then(|text| name_of(&text))
            .unwrap_or_else(|_| "?".to_string()),
    };
    caller.audit(&app, "pipeline.create", &target, &outcome, |_| None);
    let name = outcome?;
    Ok((StatusCode::CREATED, Json(Named { name })).into_response())
}

/// Checks and saves a posted pipeline (`existing`: the name it replaces).
fn save(app: &App, headers: &HeaderMap, body: &[u8], existing: Option<&str>) -> Result<String> {
    let mut text = pipeline_text(headers, body)?;
    let name = name_of(&text)?;
    if let Some(existing) = existing {
        if name != existing {
            return Err(ServeError::BadRequest(format!(
                "[pipeline] name is `{name}` but the URL names `{existing}` (a pipeline cannot be renamed)"
            )));
        }
        text = unmask(&text, &app.store.pipeline_text(existing, &app.key)?)?;
    }
    read_pipeline(&text, &app.rules, &*app.connectors)?;
    app.store
        .save_pipeline(&name, &text, &app.key, existing.is_none())?;
    Ok(name)
}

#[utoipa::path(post, path = "/api/v1/pipelines/validate", tag = "pipelines",
    request_body(content = String, content_type = "application/toml"),
    responses((status = 200, body = serde_json::Value, description = "the plan: tables, rows, chunks, type mapping, what is carried; nothing is saved"),
        (status = 400), (status = 502, description = "a database could not be reached")))]
pub async fn validate(
    State(app): State<App>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Json<serde_json::Value>> {
    let text = pipeline_text(&headers, &body)?;
    let name = name_of(&text)?;
    // An edit of an existing pipeline is tested with its stored secrets.
    let text = match app.store.pipeline_text(&name, &app.key) {
        Ok(stored) => unmask(&text, &stored)?,
        Err(_) => text,
    };
    let pipeline = read_pipeline(&text, &app.rules, &*app.connectors)?;
    let (source, target) = dmp_engine::open_pipeline(&*app.connectors, &pipeline)?;
    let report = dmp_engine::plan(&pipeline, &*source, &*target).await?;
    // The plan reads the source; this reads the target (and writes nothing
    // there), so that both connections are tested.
    let names: Vec<String> = report.tables.iter().map(|t| t.name.clone()).collect();
    target.taken_names(&names).await.map_err(|e| {
        ServeError::Engine(dmp_contract::Error::Layer {
            kind: e.kind(),
            source: format!("{}: {}", pipeline.target, e.report()).into(),
        })
    })?;
    let mut value = serde_json::to_value(&report)
        .map_err(|e| ServeError::BadRequest(format!("the plan as JSON: {e}")))?;
    if let Some(object) = value.as_object_mut() {
        object.insert("name".into(), name.into());
    }
    Ok(Json(value))
}

#[utoipa::path(get, path = "/api/v1/pipelines/{name}", tag = "pipelines",
    params(("name" = String, Path)), responses((status = 200, body = PipelineView), (status = 404)))]
pub async fn show(State(app): State<App>, Path(name): Path<String>) -> Result<Json<PipelineView>> {
    let stored = app.store.pipeline_text(&name, &app.key)?;
    let raw = outline(&stored);
    let text = masked_text(&stored);
    let shown = outline(&text);
    let status = app.supervisor.slot(&name).status();
    Ok(Json(PipelineView {
        state: status.state,
        mode: shown.mode,
        source: definitions_view(&shown.source, &raw.source),
        target: definitions_view(&shown.target, &raw.target),
        transforms: shown.transforms,
        toml: text,
        name,
    }))
}

fn definitions_view(shown: &str, raw: &str) -> EndpointView {
    EndpointView {
        url: shown.to_string(),
        password_set: password_set(raw),
    }
}

#[utoipa::path(put, path = "/api/v1/pipelines/{name}", tag = "pipelines",
    params(("name" = String, Path)),
    request_body(content = String, content_type = "application/toml", description = "masked secrets (`***`) keep their stored values"),
    responses((status = 200, body = Named), (status = 400), (status = 404)))]
pub async fn replace(
    State(app): State<App>,
    caller: Caller,
    Path(name): Path<String>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Json<Named>> {
    let outcome = save(&app, &headers, &body, Some(&name));
    caller.audit(&app, "pipeline.update", &name, &outcome, |_| None);
    Ok(Json(Named { name: outcome? }))
}

#[utoipa::path(delete, path = "/api/v1/pipelines/{name}", tag = "pipelines",
    params(("name" = String, Path)),
    responses((status = 204, description = "deleted"), (status = 404), (status = 409, description = "it is running")))]
pub async fn remove(
    State(app): State<App>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode> {
    let outcome = if app.supervisor.slot(&name).is_active() {
        Err(ServeError::Conflict(format!(
            "pipeline {name} is running: stop it first"
        )))
    } else {
        app.store.delete_pipeline(&name)
    };
    caller.audit(&app, "pipeline.delete", &name, &outcome, |_| None);
    outcome?;
    app.supervisor.forget(&name);
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/pipelines/{name}/toml", tag = "pipelines",
    params(("name" = String, Path)),
    responses((status = 200, content_type = "application/toml", body = String), (status = 404)))]
pub async fn export(State(app): State<App>, Path(name): Path<String>) -> Result<Response> {
    let text = masked_text(&app.store.pipeline_text(&name, &app.key)?);
    Ok((
        [(header::CONTENT_TYPE, "application/toml; charset=utf-8")],
        text,
    )
        .into_response())
}

/// Used by the control handlers: 404 for a pipeline that is not stored.
pub(super) fn known(app: &App, name: &str) -> Result<()> {
    definitions::check_pipeline_name(name)
        .map_err(|_| ServeError::NotFound(format!("no pipeline {}", dmp_model::printable(name))))?;
    app.store.pipeline_text(name, &app.key).map(|_| ())
}

/// Pipeline `name` read under the service's rules, ready to open.
pub(super) fn load(app: &App, name: &str) -> Result<dmp_config::Pipeline> {
    known(app, name)?;
    let text = app.store.pipeline_text(name, &app.key)?;
    read_pipeline(&text, &app.rules, &*app.connectors)
}

/// 409 while pipeline `name` runs: what needs its lease waits for a stop.
pub(super) fn idle(app: &App, name: &str, what: &str) -> Result<()> {
    if app.supervisor.slot(name).is_active() {
        return Err(ServeError::Conflict(format!(
            "pipeline {name} is running: stop or pause it to {what}"
        )));
    }
    Ok(())
}
