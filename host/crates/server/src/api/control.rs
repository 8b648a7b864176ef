//! Running pipelines and watching them: start, stop, pause, resume,
//! status, runs, logs, the lag history and the live event stream.

use std::convert::Infallible;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::sync::broadcast;
use utoipa::{IntoParams, ToSchema};

use super::pipelines::known;
use super::{App, Body, Caller, Query, accepted, json_or_default};
use crate::error::{Result, ServeError};
use crate::logs::{LogLine, level_of, pipeline_log};
use crate::store::RunEntry;
use crate::supervisor::{self, LagPoint, Status};

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartRequest {
    /// Start anew instead of resuming what the last run left.
    #[serde(default)]
    pub restart: bool,
}

fn audited(
    app: &App,
    caller: &Caller,
    action: &str,
    name: &str,
    outcome: Result<()>,
) -> Result<Response> {
    caller.audit(app, action, name, &outcome, |()| None);
    outcome?;
    Ok(accepted(
        serde_json::json!({ "state": app.supervisor.slot(name).status().state }),
    ))
}

#[utoipa::path(post, path = "/api/v1/pipelines/{name}/start", tag = "control",
    params(("name" = String, Path)), request_body(content = StartRequest, description = "optional"),
    responses((status = 202, description = "started"), (status = 409, description = "running already"), (status = 404)))]
pub async fn start(
    State(app): State<App>,
    caller: Caller,
    Path(name): Path<String>,
    Body(body): Body,
) -> Result<Response> {
    known(&app, &name)?;
    let request: StartRequest = json_or_default(&body)?;
    let outcome = supervisor::start(&app, &name, request.restart);
    audited(
        &app,
        &caller,
        if request.restart {
            "pipeline.restart"
        } else {
            "pipeline.start"
        },
        &name,
        outcome,
    )
}

#[utoipa::path(post, path = "/api/v1/pipelines/{name}/stop", tag = "control",
    params(("name" = String, Path)), responses((status = 202, description = "stopping at the next batch boundary"), (status = 404)))]
pub async fn stop(
    State(app): State<App>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Response> {
    known(&app, &name)?;
    let outcome = supervisor::stop(&app, &name, false).await;
    audited(&app, &caller, "pipeline.stop", &name, outcome)
}

#[utoipa::path(post, path = "/api/v1/pipelines/{name}/pause", tag = "control",
    params(("name" = String, Path)), responses((status = 202, description = "pausing at the next batch boundary"), (status = 409, description = "not running"), (status = 404)))]
pub async fn pause(
    State(app): State<App>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Response> {
    known(&app, &name)?;
    let outcome = supervisor::stop(&app, &name, true).await;
    audited(&app, &caller, "pipeline.pause", &name, outcome)
}

#[utoipa::path(post, path = "/api/v1/pipelines/{name}/resume", tag = "control",
    params(("name" = String, Path)), responses((status = 202, description = "resumed from its checkpoints"), (status = 409, description = "not paused"), (status = 404)))]
pub async fn resume(
    State(app): State<App>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Response> {
    known(&app, &name)?;
    let outcome = if app.supervisor.slot(&name).status().state == "paused" {
        supervisor::start(&app, &name, false)
    } else {
        Err(ServeError::Conflict(format!(
            "pipeline {name} is not paused"
        )))
    };
    audited(&app, &caller, "pipeline.resume", &name, outcome)
}

#[utoipa::path(get, path = "/api/v1/pipelines/{name}/status", tag = "watch",
    params(("name" = String, Path)), responses((status = 200, body = Status), (status = 404)))]
pub async fn status(State(app): State<App>, Path(name): Path<String>) -> Result<Json<Status>> {
    known(&app, &name)?;
    Ok(Json(app.supervisor.slot(&name).status()))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RunsQuery {
    /// At most this many, newest first (default 50).
    pub limit: Option<usize>,
}

#[utoipa::path(get, path = "/api/v1/pipelines/{name}/runs", tag = "watch",
    params(("name" = String, Path), RunsQuery), responses((status = 200, body = [RunEntry]), (status = 404)))]
pub async fn runs(
    State(app): State<App>,
    Path(name): Path<String>,
    Query(q): Query<RunsQuery>,
) -> Result<Json<Vec<RunEntry>>> {
    known(&app, &name)?;
    let mut runs = app
        .store
        .service_runs(&name, q.limit.unwrap_or(50).min(1000))?;
    // The run under way: its rows so far, from its progress.
    let status = app.supervisor.slot(&name).status();
    if let Some(current) = runs
        .iter_mut()
        .find(|r| r.status == "running" && Some(r.run) == status.run)
    {
        let rows: u64 = status.tables.iter().map(|t| t.rows_done).sum();
        current.rows = i64::try_from(rows).unwrap_or(i64::MAX);
    }
    Ok(Json(runs))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct LogsQuery {
    /// error | warn | info | debug (default info): this and more severe.
    pub level: Option<String>,
    /// At most this many lines (default 200).
    pub limit: Option<usize>,
    /// Keep the response open and send new lines as they come
    /// (newline-delimited JSON).
    pub follow: Option<bool>,
}

#[utoipa::path(get, path = "/api/v1/pipelines/{name}/logs", tag = "watch",
    params(("name" = String, Path), LogsQuery),
    responses((status = 200, body = [LogLine], description = "oldest first; with follow, one JSON object per line"), (status = 404)))]
pub async fn logs(
    State(app): State<App>,
    Path(name): Path<String>,
    Query(q): Query<LogsQuery>,
) -> Result<Response> {
    known(&app, &name)?;
    let level = match q.level.as_deref() {
        None => tracing::Level::INFO,
        Some(text) => level_of(text).ok_or_else(|| {
            ServeError::BadRequest(format!(
                "query string: level `{}` is not error, warn, info, debug or trace",
                dmp_model::printable(text)
            ))
        })?,
    };
    let log = pipeline_log(&name);
    // Subscribed before the past is read: a line may come twice, none is lost.
    let follow = log.follow.subscribe();
    let lines = log.lines(level, q.limit.unwrap_or(200).min(10_000));
    if !q.follow.unwrap_or(false) {
        return Ok(Json(lines).into_response());
    }
    let past =
        futures_util::stream::iter(lines.into_iter().map(|l| Ok::<_, Infallible>(ndjson(&l))));
    let stop = app.stop.clone();
    let new = futures_util::stream::unfold(follow, move |mut follow| {
        let stop = stop.clone();
        async move {
            loop {
                let next = tokio::select! {
                    () = stop.wait() => return None,
                    next = follow.recv() => next,
                };
                match next {
                    Ok(line) if level_of(&line.level).is_some_and(|l| l <= level) => {
                        return Some((Ok(ndjson(&line)), follow));
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        }
    });
    let body = axum::body::Body::from_stream(futures_util::StreamExt::chain(past, new));
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
}

fn ndjson(line: &LogLine) -> String {
    let mut text = serde_json::to_string(line).unwrap_or_default();
    text.push('\n');
    text
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct LagQuery {
    /// The last this many minutes (default 60).
    pub minutes: Option<u64>,
}

#[utoipa::path(get, path = "/api/v1/pipelines/{name}/lag", tag = "watch",
    params(("name" = String, Path), LagQuery),
    responses((status = 200, body = [LagPoint],
        description = "The stream's lag, one point a second while it applies changes, oldest first; a two-way sync's points carry the lag from side B back to side A too (`back_lag_ms`, absent until that leg applied a change)"),
        (status = 404)))]
pub async fn lag(
    State(app): State<App>,
    Path(name): Path<String>,
    Query(q): Query<LagQuery>,
) -> Result<Json<Vec<LagPoint>>> {
    known(&app, &name)?;
    Ok(Json(
        app.supervisor
            .slot(&name)
            .lag_history(q.minutes.unwrap_or(60).min(60)),
    ))
}

#[utoipa::path(get, path = "/api/v1/pipelines/{name}/events", tag = "watch",
    params(("name" = String, Path)),
    responses((status = 200, content_type = "text/event-stream", body = String,
        description = "`status` events (the status JSON, every second while it runs and on each change of state) and `log` events (one log line)"), (status = 404)))]
pub async fn events(State(app): State<App>, Path(name): Path<String>) -> Result<Response> {
    known(&app, &name)?;
    let slot = app.supervisor.slot(&name);
    let first = serde_json::to_string(&slot.status()).unwrap_or_default();
    let watch = Watch {
        stop: app.stop.clone(),
        first: Some(first),
        status: slot.events.subscribe(),
        logs: pipeline_log(&name).follow.subscribe(),
    };
    let stream = futures_util::stream::unfold(watch, |mut watch| async move {
        let event = watch.next().await?;
        Some((Ok::<_, Infallible>(event), watch))
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// One follower of a pipeline's events.
struct Watch {
    stop: dmp_engine::Shutdown,
    first: Option<String>,
    status: broadcast::Receiver<supervisor::Event>,
    logs: broadcast::Receiver<LogLine>,
}

impl Watch {
    async fn next(&mut self) -> Option<Event> {
        if let Some(first) = self.first.take() {
            return Some(Event::default().event("status").data(first));
        }
        loop {
            tokio::select! {
                () = self.stop.wait() => return None,
                status = self.status.recv() => match status {
                    Ok(e) => return Some(Event::default().event(e.kind).data(e.data)),
                    // A slow follower misses samples, not the stream.
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                line = self.logs.recv() => match line {
                    Ok(line) => return Some(Event::default().event("log").data(serde_json::to_string(&line).unwrap_or_default())),
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
            }
        }
    }
}
