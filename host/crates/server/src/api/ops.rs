//! Health, readiness, metrics and the OpenAPI document.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use utoipa::OpenApi;

use super::App;
use crate::error::Result;

#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "the process is up")))]
pub async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "the service store answers"), (status = 503)))]
pub async fn readyz(State(app): State<App>) -> Response {
    match app.store.ping() {
        Ok(()) => Json(serde_json::json!({ "status": "ready" })).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "error": e.message() })),
        )
            .into_response(),
    }
}

#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, content_type = "text/plain", body = String, description = "Prometheus text format")))]
pub async fn metrics(State(app): State<App>) -> Response {
    // Retries are counted by the log layer; sync them into the family.
    for name in app
        .store
        .pipeline_names()
        .unwrap_or_default()
        .into_iter()
        .map(|(n, _)| n)
    {
        let retries = crate::logs::pipeline_log(&name)
            .retries
            .load(std::sync::atomic::Ordering::Relaxed);
        let counter = app
            .metrics
            .retries
            .get_or_create(&crate::metrics::pipeline(&name));
        counter.inc_by(retries.saturating_sub(counter.get()));
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        app.metrics.encode(),
    )
        .into_response()
}

#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "operations",
    responses((status = 200, body = serde_json::Value, description = "this document")))]
pub async fn openapi() -> Result<Json<utoipa::openapi::OpenApi>> {
    Ok(Json(ApiDoc::openapi()))
}

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            Http, HttpAuthScheme, SecurityRequirement, SecurityScheme,
        };
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        doc.security = Some(vec![SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )]);
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "dmp serve", description = "DMP's control plane: pipelines, runs, dead letters, two-way sync conflicts, verify, plugins, access. Every error is JSON {\"error\": …}."),
    modifiers(&BearerAuth),
    paths(
        healthz, readyz, metrics, openapi,
        super::admin::sign_in, super::admin::whoami, super::admin::sign_out,
        super::pipelines::list, super::pipelines::create, super::pipelines::validate,
        super::pipelines::show, super::pipelines::replace, super::pipelines::remove, super::pipelines::export,
        super::control::start, super::control::stop, super::control::pause, super::control::resume,
        super::control::status, super::control::runs, super::control::logs, super::control::lag, super::control::events, super::cluster::placement,
        super::dead_letters::groups, super::dead_letters::rows, super::dead_letters::replay, super::dead_letters::purge,
        super::conflicts::list, super::conflicts::show, super::conflicts::resolve,
        super::verify::start, super::verify::result,
        super::streams::status, super::streams::drop_stream,
        super::plugins::list, super::plugins::upload, super::plugins::rollback,
        super::admin::tokens, super::admin::create_token, super::admin::revoke_token,
        super::admin::users, super::admin::add_user, super::admin::audit,
    )
)]
pub struct ApiDoc;
