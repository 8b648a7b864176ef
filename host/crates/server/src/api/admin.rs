//! Signing in and out, API tokens, users and the audit log.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{App, Body, Caller, Query, SESSION_COOKIE, json_or_default, session_cookie};
use crate::audit::AuditEntry;
use crate::auth::{NewToken, Role, SESSION_HOURS, TokenInfo, UserInfo};
use crate::error::{Result, ServeError};

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    pub user: String,
    pub password: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Whoami {
    pub user: String,
    pub role: Role,
    /// Send it back as `X-CSRF-Token` with every write made with the
    /// session cookie; absent for bearer tokens, which need none.
    pub csrf: Option<String>,
}

/// Signs a dashboard user in: a new session (any earlier one of this
/// browser ends), in an HttpOnly, SameSite=Strict cookie.
#[utoipa::path(post, path = "/api/v1/session", tag = "session", request_body = SignIn,
    responses((status = 200, body = Whoami), (status = 401, description = "wrong user or password")))]
pub async fn sign_in(
    State(app): State<App>,
    caller: Caller,
    headers: axum::http::HeaderMap,
    Body(body): Body,
) -> Result<Response> {
    let form: SignIn = json_or_default(&body)?;
    if form.user.is_empty() {
        return Err(ServeError::BadRequest(
            "request body: `user` and `password` are required".into(),
        ));
    }
    let (user, password) = (form.user.clone(), form.password);
    let store_app = app.clone();
    let signed = tokio::task::spawn_blocking(move || store_app.store.sign_in(&user, &password))
        .await
        .map_err(|e| ServeError::Home(format!("signing in: {e}")))??;
    let Some((id, csrf, role)) = signed else {
        app.store.audit(
            &format!("user {}", form.user),
            &caller.addr,
            "session.sign_in",
            &form.user,
            "refused: wrong user or password",
        );
        return Err(ServeError::Unauthorized);
    };
    if let Some(old) = session_cookie(&headers) {
        app.store.end_session(&old)?;
    }
    app.store.audit(
        &format!("user {}", form.user),
        &caller.addr,
        "session.sign_in",
        &form.user,
        "ok",
    );
    let secure = if app.secure_cookies { "; Secure" } else { "" };
    let cookie = format!(
        "{SESSION_COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        SESSION_HOURS * 3600
    );
    let body = Whoami {
        user: form.user,
        role,
        csrf: Some(csrf),
    };
    Ok(([(header::SET_COOKIE, cookie)], Json(body)).into_response())
}

#[utoipa::path(get, path = "/api/v1/session", tag = "session",
    responses((status = 200, body = Whoami)))]
pub async fn whoami(caller: Caller) -> Result<Json<Whoami>> {
    let principal = caller.principal.ok_or(ServeError::Unauthorized)?;
    Ok(Json(Whoami {
        user: principal
            .who
            .split_once(' ')
            .map_or(principal.who.clone(), |(_, n)| n.to_string()),
        role: principal.role,
        csrf: principal.csrf,
    }))
}

#[utoipa::path(delete, path = "/api/v1/session", tag = "session",
    responses((status = 204, description = "signed out")))]
pub async fn sign_out(
    State(app): State<App>,
    caller: Caller,
    headers: axum::http::HeaderMap,
) -> Result<Response> {
    if let Some(id) = session_cookie(&headers) {
        app.store.end_session(&id)?;
    }
    app.store
        .audit(caller.who(), &caller.addr, "session.sign_out", "", "ok");
    let cookie = format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, cookie)]).into_response())
}

#[utoipa::path(get, path = "/api/v1/tokens", tag = "admin",
    responses((status = 200, body = [TokenInfo])))]
pub async fn tokens(State(app): State<App>) -> Result<Json<Vec<TokenInfo>>> {
    Ok(Json(app.store.tokens()?))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    pub name: String,
    pub role: Option<Role>,
    /// Days until it expires; never when absent.
    pub expires_days: Option<u64>,
}

#[utoipa::path(post, path = "/api/v1/tokens", tag = "admin", request_body = TokenRequest,
    responses((status = 201, body = NewToken)))]
pub async fn create_token(
    State(app): State<App>,
    caller: Caller,
    Body(body): Body,
) -> Result<Response> {
    let request: TokenRequest = json_or_default(&body)?;
    let role = request.role.ok_or_else(|| {
        ServeError::BadRequest(
            "request body: `role` is required (viewer, operator or admin)".into(),
        )
    })?;
    let expires = request
        .expires_days
        .map(|d| std::time::Duration::from_secs(d.saturating_mul(86_400)));
    let outcome = app.store.create_token(&request.name, role, expires);
    let target = format!("{} ({})", request.name, role.as_str());
    caller.audit(&app, "token.create", &target, &outcome, |_| None);
    Ok((StatusCode::CREATED, Json(outcome?)).into_response())
}

#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "admin",
    params(("id" = String, Path, description = "the token's id or name")),
    responses((status = 204, description = "revoked"), (status = 404)))]
pub async fn revoke_token(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    let revoked = app.store.revoke_token(&id)?;
    app.store.audit(
        caller.who(),
        &caller.addr,
        "token.revoke",
        &id,
        if revoked { "ok" } else { "no such token" },
    );
    if revoked {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ServeError::NotFound(format!(
            "no live token {}",
            dmp_model::printable(&id)
        )))
    }
}

#[utoipa::path(get, path = "/api/v1/users", tag = "admin",
    responses((status = 200, body = [UserInfo])))]
pub async fn users(State(app): State<App>) -> Result<Json<Vec<UserInfo>>> {
    Ok(Json(app.store.users()?))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserRequest {
    pub name: String,
    pub role: Option<Role>,
    pub password: String,
}

#[utoipa::path(post, path = "/api/v1/users", tag = "admin", request_body = UserRequest,
    responses((status = 201, body = UserInfo)))]
pub async fn add_user(
    State(app): State<App>,
    caller: Caller,
    Body(body): Body,
) -> Result<Response> {
    let request: UserRequest = json_or_default(&body)?;
    let role = request.role.ok_or_else(|| {
        ServeError::BadRequest(
            "request body: `role` is required (viewer, operator or admin)".into(),
        )
    })?;
    let (name, password, store_app) = (request.name.clone(), request.password, app.clone());
    let outcome =
        tokio::task::spawn_blocking(move || store_app.store.add_user(&name, role, &password))
            .await
            .map_err(|e| ServeError::Home(format!("adding a user: {e}")))?;
    let target = format!("{} ({})", request.name, role.as_str());
    caller.audit(&app, "user.add", &target, &outcome, |()| None);
    outcome?;
    Ok((
        StatusCode::CREATED,
        Json(UserInfo {
            name: request.name,
            role,
        }),
    )
        .into_response())
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    /// At most this many (default 200).
    pub limit: Option<usize>,
}

#[utoipa::path(get, path = "/api/v1/audit", tag = "admin", params(Limit),
    responses((status = 200, body = [AuditEntry])))]
pub async fn audit(
    State(app): State<App>,
    Query(q): Query<Limit>,
) -> Result<Json<Vec<AuditEntry>>> {
    Ok(Json(
        app.store
            .audit_entries(q.limit.unwrap_or(200).min(10_000))?,
    ))
}
