//! The HTTP API under `/api/v1` and the operational endpoints. Every
//! route is in one table with the access it needs; the router is built
//! from that table (so no route escapes the access check) and the
//! OpenAPI document must list exactly its routes (a test checks).

mod admin;
mod cluster;
mod conflicts;
mod control;
mod dead_letters;
mod ops;
mod pipelines;
mod plugins;
mod streams;
mod verify;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header, request::Parts};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post, put};

use crate::auth::{Principal, Role};
use crate::error::{Result, ServeError};
use crate::service::Service;

pub use ops::ApiDoc;

pub type App = Arc<Service>;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (health, the OpenAPI document, signing in).
    Public,
    /// This role or a higher one.
    Role(Role),
}

/// One route of the API.
#[derive(Debug, Clone)]
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
}

const VIEWER: Access = Access::Role(Role::Viewer);
const OPERATOR: Access = Access::Role(Role::Operator);
const ADMIN: Access = Access::Role(Role::Admin);
const PUBLIC: Access = Access::Public;

/// Every route, its access and its handler.
fn routes() -> Vec<(Route, MethodRouter<App>)> {
    use Method as M;
    let p = "/api/v1/pipelines/{name}";
    let table: Vec<(Method, &'static str, Access, MethodRouter<App>)> = vec![
        (M::GET, "/healthz", PUBLIC, get(ops::healthz)),
        (M::GET, "/readyz", PUBLIC, get(ops::readyz)),
        (M::GET, "/metrics", VIEWER, get(ops::metrics)),
        (M::GET, "/api/v1/openapi.json", PUBLIC, get(ops::openapi)),
        (M::POST, "/api/v1/session", PUBLIC, post(admin::sign_in)),
        (M::GET, "/api/v1/session", VIEWER, get(admin::whoami)),
        (
            M::DELETE,
            "/api/v1/session",
            VIEWER,
            delete(admin::sign_out),
        ),
        (M::GET, "/api/v1/pipelines", VIEWER, get(pipelines::list)),
        (M::POST, "/api/v1/pipelines", ADMIN, post(pipelines::create)),
        (
            M::POST,
            "/api/v1/pipelines/validate",
            ADMIN,
            post(pipelines::validate),
        ),
        (M::GET, p, VIEWER, get(pipelines::show)),
        (M::PUT, p, ADMIN, put(pipelines::replace)),
        (M::DELETE, p, ADMIN, delete(pipelines::remove)),
        (
            M::GET,
            "/api/v1/pipelines/{name}/toml",
            VIEWER,
            get(pipelines::export),
        ),
        (
            M::POST,
            "/api/v1/pipelines/{name}/start",
            OPERATOR,
            post(control::start),
        ),
        (
            M::POST,
            "/api/v1/pipelines/{name}/stop",
            OPERATOR,
            post(control::stop),
        ),
        (
            M::POST,
            "/api/v1/pipelines/{name}/pause",
            OPERATOR,
            post(control::pause),
        ),
        (
            M::POST,
            "/api/v1/pipelines/{name}/resume",
            OPERATOR,
            post(control::resume),
        ),
        (
            M::GET,
            "/api/v1/pipelines/{name}/status",
            VIEWER,
            get(control::status),
        ),
        (
            M::GET,
            "/api/v1/pipelines/{name}/runs",
            VIEWER,
            get(control::runs),
        ),
        (
            M::GET,
            "/api/v1/pipelines/{name}/logs",
            VIEWER,
            get(control::logs),
        ),
        (
            M::GET,
            "/api/v1/pipelines/{name}/lag",
            VIEWER,
            get(control::lag),
        ),
        (
            M::GET,
            "/api/v1/pipelines/{name}/placement",
            VIEWER,
            get(cluster::placement),
        ),
        (
            M::GET,
            "/api/v1/pipelines/{name}/events",
            VIEWER,
            get(control::events),
        ),
        (
            M::GET,
            "/api/v1/pipelines/{name}/dead-letters",
            VIEWER,
            get(dead_letters::groups),
        ),
        (
            M::GET,
            "/api/v1/pipelines/{name}/dead-letters/rows",
            OPERATOR,
            get(dead_letters::rows),
        ),
        (
            M::POST,
            "/api/v1/pipelines/{name}/dead-letters/replay",
            OPERATOR,
            post(dead_letters::replay),
        ),
        (
            M::POST,
            "/api/v1/pipelines/{name}/dead-letters/purge",
            OPERATOR,
            post(dead_letters::purge),
        ),
        (
            M::GET,
            "/api/v1/pipelines/{name}/conflicts",
            VIEWER,
            get(conflicts::list),
        ),
        (
            M::GET,
            "/api/v1/pipelines/{name}/conflicts/{id}",
            VIEWER,
            get(conflicts::show),
        ),
        (
            M::POST,
            "/api/v1/pipelines/{name}/conflicts/{id}/resolve",
            OPERATOR,
            post(conflicts::resolve),
        ),
        (
            M::POST,
            "/api/v1/pipelines/{name}/verify",
            OPERATOR,
            post(verify::start),
        ),
        (
            M::GET,
            "/api/v1/pipelines/{name}/verify",
            VIEWER,
            get(verify::result),
        ),
        (
            M::GET,
            "/api/v1/pipelines/{name}/stream",
            VIEWER,
            get(streams::status),
        ),
        (
            M::DELETE,
            "/api/v1/pipelines/{name}/stream",
            ADMIN,
            delete(streams::drop_stream),
        ),
        (
            M::GET,
            "/api/v1/pipelines/{name}/plugins",
            VIEWER,
            get(plugins::list),
        ),
        (
            M::POST,
            "/api/v1/pipelines/{name}/plugins/{plugin}",
            ADMIN,
            post(plugins::upload),
        ),
        (
            M::POST,
            "/api/v1/pipelines/{name}/plugins/{plugin}/rollback",
            ADMIN,
            post(plugins::rollback),
        ),
        (M::GET, "/api/v1/tokens", ADMIN, get(admin::tokens)),
        (M::POST, "/api/v1/tokens", ADMIN, post(admin::create_token)),
        (
            M::DELETE,
            "/api/v1/tokens/{id}",
            ADMIN,
            delete(admin::revoke_token),
        ),
        (M::GET, "/api/v1/users", ADMIN, get(admin::users)),
        (M::POST, "/api/v1/users", ADMIN, post(admin::add_user)),
        (M::GET, "/api/v1/audit", ADMIN, get(admin::audit)),
    ];
    table
        .into_iter()
        .map(|(method, path, access, handler)| {
            (
                Route {
                    method,
                    path,
                    access,
                },
                handler,
            )
        })
        .collect()
}

/// The route table without handlers: for the authorization tests and
/// the check against the OpenAPI document.
pub fn route_table() -> Vec<Route> {
    routes().into_iter().map(|(route, _)| route).collect()
}

/// The API's router, every route behind its access check.
pub fn router(app: App) -> Router {
    let mut router = Router::new();
    for (route, handler) in routes() {
        let access = route.access;
        let guarded = handler.route_layer(axum::middleware::from_fn_with_state(
            app.clone(),
            move |State(app): State<App>, request: Request, next: Next| {
                authorize(app, access, request, next)
            },
        ));
        router = router.route(route.path, guarded);
    }
    router
        .merge(crate::dashboard::router())
        .fallback(not_found)
        .layer(axum::middleware::from_fn(json_errors))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(app)
}

async fn not_found() -> ServeError {
    ServeError::NotFound(
        "no such endpoint (the API is under /api/v1; see /api/v1/openapi.json)".into(),
    )
}

/// Error responses that axum makes itself (405, a rejected extractor)
/// get the API's JSON form too.
async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let message = if text.trim().is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        text.trim().to_string()
    };
    let mut response =
        (status, axum::Json(serde_json::json!({ "error": message }))).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            response.headers_mut().insert(name.clone(), value.clone());
        }
    }
    response
}

/// The caller of a request, for handlers and the audit log.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Option<Principal>,
    pub addr: String,
}

impl Caller {
    pub fn who(&self) -> &str {
        self.principal
            .as_ref()
            .map_or("anonymous", |p| p.who.as_str())
    }

    pub fn role(&self) -> Option<Role> {
        self.principal.as_ref().map(|p| p.role)
    }

    /// Records in the audit log that this caller tried `action` on
    /// `target`, and how it went: `ok` (`ok: …` with what `said` gives) or
    /// the error.
    pub fn audit<T>(
        &self,
        app: &Service,
        action: &str,
        target: &str,
        outcome: &Result<T>,
        said: impl FnOnce(&T) -> Option<String>,
    ) {
        let result = match outcome {
            Ok(value) => said(value).map_or_else(|| "ok".to_string(), |s| format!("ok: {s}")),
            Err(e) => e.message(),
        };
        app.store
            .audit(self.who(), &self.addr, action, target, &result);
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ServeError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or(ServeError::Unauthorized)
    }
}

pub const SESSION_COOKIE: &str = "dmp_session";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The session id of the request's cookie, if any.
pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.to_string())
}

/// Finds the caller (a bearer token, else a session cookie), checks the
/// route's access and, for writes made with a cookie, the CSRF token.
async fn authorize(app: App, access: Access, mut request: Request, next: Next) -> Response {
    match caller(&app, access, &request) {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            request.extensions_mut().insert(BodyLimit(app.max_body));
            next.run(request).await
        }
        Err(e) => {
            app.metrics
                .refused
                .get_or_create(&crate::metrics::StatusLabel {
                    status: e.status().as_u16(),
                })
                .inc();
            e.into_response()
        }
    }
}

fn caller(app: &Service, access: Access, request: &Request) -> Result<Caller> {
    let principal = match principal(app, request) {
        Ok(principal) => principal,
        // A public route serves anyone: stale credentials do not matter.
        Err(ServeError::Unauthorized) if access == Access::Public => None,
        Err(e) => return Err(e),
    };
    checked(access, request, principal)
}

/// The caller's principal: a bearer token's (which must hold), else a
/// live session's, else none.
fn principal(app: &Service, request: &Request) -> Result<Option<Principal>> {
    let headers = request.headers();
    if let Some(auth) = headers.get(header::AUTHORIZATION) {
        let token = auth
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(ServeError::Unauthorized)?;
        return Ok(Some(
            app.store
                .authenticate_token(token.trim())?
                .ok_or(ServeError::Unauthorized)?,
        ));
    }
    match session_cookie(headers) {
        Some(id) => app.store.authenticate_session(&id),
        None => Ok(None),
    }
}

/// The caller if `principal` may use a route of `access` (with the CSRF
/// token of a session on a write).
fn checked(access: Access, request: &Request, principal: Option<Principal>) -> Result<Caller> {
    let addr = request
        .extensions()
        .get::<ConnectInfo<crate::listen::PeerAddr>>()
        .map_or_else(|| "unknown".to_string(), |c| c.0.0.ip().to_string());
    let headers = request.headers();
    let Access::Role(needed) = access else {
        return Ok(Caller { principal, addr });
    };
    let principal = principal.ok_or(ServeError::Unauthorized)?;
    if principal.role < needed {
        return Err(ServeError::Forbidden(format!(
            "{} is {} and this needs {}",
            principal.who,
            principal.role.as_str(),
            needed.as_str()
        )));
    }
    let reads = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if let Some(csrf) = &principal.csrf
        && !reads
        && headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .is_none_or(|sent| sent != csrf)
    {
        return Err(ServeError::Forbidden(
            "missing or wrong X-CSRF-Token header (the dashboard sends it; API clients use a bearer token)".into(),
        ));
    }
    Ok(Caller {
        principal: Some(principal),
        addr,
    })
}

/// A request body within the service's cap.
pub struct Body(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = ServeError;

    async fn from_request(request: Request, state: &S) -> Result<Self> {
        let limit = request
            .extensions()
            .get::<BodyLimit>()
            .map_or(crate::service::DEFAULT_MAX_BODY_KB as usize * 1024, |l| l.0);
        let body = request.into_body();
        let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
            ServeError::TooLarge(format!(
                "the request body is larger than {} KiB",
                limit / 1024
            ))
        })?;
        let _ = state;
        Ok(Body(bytes))
    }
}

/// The body cap of a request (set per service and per route).
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// A JSON body, or the type's default when the body is empty.
pub fn json_or_default<T: serde::de::DeserializeOwned + Default>(body: &Bytes) -> Result<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        ServeError::BadRequest(format!(
            "request body: {e} (line {}, column {})",
            e.line(),
            e.column()
        ))
    })
}

/// A query string as `T`, with a JSON error naming the parameter.
pub struct Query<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ServeError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|e| ServeError::BadRequest(format!("query string: {}", e.body_text())))
    }
}

/// 202 with a JSON body.
pub fn accepted(body: serde_json::Value) -> Response {
    (StatusCode::ACCEPTED, axum::Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use utoipa::OpenApi;

    #[test]
    fn every_route_is_documented_and_every_documented_path_routed() {
        let mut router: Router<App> = Router::new();
        for (route, handler) in routes() {
            router = router.route(route.path, handler);
        }
        drop(router);
        let routed: BTreeSet<(String, String)> = route_table()
            .into_iter()
            .map(|r| (r.method.as_str().to_ascii_lowercase(), r.path.to_string()))
            .collect();
        let doc = serde_json::to_value(ApiDoc::openapi()).expect("doc as JSON");
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("item").keys() {
                documented.insert((method.clone(), path.clone()));
            }
        }
        assert_eq!(routed, documented);
        assert!(
            doc["openapi"]
                .as_str()
                .is_some_and(|v| v.starts_with("3.1")),
            "{}",
            doc["openapi"]
        );
    }
}
