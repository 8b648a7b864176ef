//! Who may do what: roles, API tokens, users and browser sessions.
//!
//! Tokens are `dmp_<id>_<secret>` with 32 random bytes of secret, stored
//! as SHA-256 of the secret: a slow hash buys nothing against a random
//! 256-bit value and would cost every API call. Passwords, which people
//! choose, are stored as argon2id. Session ids are random, kept hashed,
//! replaced at every sign-in, and come with a CSRF token that every write
//! made with the cookie must echo.

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Result, ServeError, StoreContext};
use crate::store::{ServiceStore, now};

/// How long a browser session lasts without a new sign-in.
pub const SESSION_HOURS: i64 = 12;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Status, runs, logs and metrics; never row data.
    Viewer,
    /// A viewer who also starts and stops pipelines, verifies and repairs,
    /// and handles dead letters with their rows.
    Operator,
    /// Everything: pipelines, plugins, tokens, users, the audit log.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Result<Role> {
        match text {
            "viewer" => Ok(Role::Viewer),
            "operator" => Ok(Role::Operator),
            "admin" => Ok(Role::Admin),
            other => Err(ServeError::BadRequest(format!(
                "unknown role `{other}` (viewer, operator or admin)"
            ))),
        }
    }
}

/// The caller of a request, once authenticated.
#[derive(Debug, Clone)]
pub struct Principal {
    /// `user NAME` or `token NAME`: what the audit log records.
    pub who: String,
    pub role: Role,
    /// Set for a browser session: writes must send it back.
    pub csrf: Option<String>,
}

fn sha256_hex(bytes: &[u8]) -> String {
    dmp_model::encode_hex(&Sha256::digest(bytes))
}

fn random_text(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| ServeError::Home(format!("no randomness: {e}")))?;
    Ok(URL_SAFE_NO_PAD.encode(buf))
}

/// Equal without telling, by its timing, how much of a guess was right.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub revoked: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NewToken {
    pub id: String,
    /// Shown once; only its hash is kept.
    pub token: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserInfo {
    pub name: String,
    pub role: Role,
}

/// A name for a token or a user: shown, logged and audited as written.
pub fn check_name(kind: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@'));
    if ok {
        Ok(())
    } else {
        Err(ServeError::BadRequest(format!(
            "{kind} name `{}` must be 1 to 64 letters, digits, `_`, `-`, `.` or `@`",
            dmp_model::printable(name)
        )))
    }
}

impl ServiceStore {
    /// A new API token; the returned text is its only appearance.
    pub fn create_token(
        &self,
        name: &str,
        role: Role,
        expires: Option<std::time::Duration>,
    ) -> Result<NewToken> {
        check_name("token", name)?;
        let id = dmp_model::encode_hex(&random_bytes::<6>()?);
        let secret = random_text(32)?;
        let expires_at = expires
            .map(|d| {
                chrono::Duration::from_std(d)
                    .map(|d| (chrono::Utc::now() + d).to_rfc3339())
                    .map_err(|_| ServeError::BadRequest("the expiry is too far away".into()))
            })
            .transpose()?;
        self.conn()?
            .execute(
                "INSERT INTO tokens (id, name, role, hash, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![id, name, role.as_str(), sha256_hex(secret.as_bytes()), now(), expires_at],
            )
            .store("saving a token")?;
        Ok(NewToken {
            token: format!("dmp_{id}_{secret}"),
            id,
        })
    }

    pub fn tokens(&self) -> Result<Vec<TokenInfo>> {
        let conn = self.conn()?;
        let mut stmt = conn
            .prepare("SELECT id, name, role, created_at, expires_at, revoked_at FROM tokens ORDER BY created_at")
            .store("listing tokens")?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, Option<String>>(5)?,
                ))
            })
            .store("listing tokens")?;
        let mut out = Vec::new();
        for row in rows {
            let (id, name, role, created_at, expires_at, revoked) = row.store("listing tokens")?;
            out.push(TokenInfo {
                id,
                name,
                role: Role::parse(&role)?,
                created_at,
                expires_at,
                revoked: revoked.is_some(),
            });
        }
        Ok(out)
    }

    /// Revokes token `id` (or the one live token named so); false if none
    /// matched. A name that several live tokens have is refused: say which.
    pub fn revoke_token(&self, id: &str) -> Result<bool> {
        let conn = self.conn()?;
        let named: i64 = conn
            .query_row(
                "SELECT count(*) FROM tokens WHERE name = ?1 AND id <> ?1 AND revoked_at IS NULL",
                [id],
                |r| r.get(0),
            )
            .store("revoking a token")?;
        if named > 1 {
            return Err(ServeError::Conflict(format!(
                "{named} live tokens are named {}: revoke one by its id (dmp token list)",
                dmp_model::printable(id)
            )));
        }
        let changed = conn
            .execute(
                "UPDATE tokens SET revoked_at = ?2 WHERE (id = ?1 OR name = ?1) AND revoked_at IS NULL",
                params![id, now()],
            )
            .store("revoking a token")?;
        Ok(changed > 0)
    }

    /// The principal of a bearer token, if it is valid now.
    pub fn authenticate_token(&self, token: &str) -> Result<Option<Principal>> {
        let Some((id, secret)) = token
            .strip_prefix("dmp_")
            .and_then(|rest| rest.split_once('_'))
        else {
            return Ok(None);
        };
        let row = self
            .conn()?
            .query_row(
                "SELECT name, role, hash, expires_at, revoked_at FROM tokens WHERE id = ?1",
                [id],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, Option<String>>(3)?,
                        r.get::<_, Option<String>>(4)?,
                    ))
                },
            )
            .optional()
            .store("checking a token")?;
        let Some((name, role, hash, expires_at, revoked)) = row else {
            return Ok(None);
        };
        if revoked.is_some()
            || !same(&hash, &sha256_hex(secret.as_bytes()))
            || expired(expires_at.as_deref())
        {
            return Ok(None);
        }
        Ok(Some(Principal {
            who: format!("token {name}"),
            role: Role::parse(&role)?,
            csrf: None,
        }))
    }

    /// Adds (or replaces the password and role of) a dashboard user.
    pub fn add_user(&self, name: &str, role: Role, password: &str) -> Result<()> {
        check_name("user", name)?;
        if password.chars().count() < 8 {
            return Err(ServeError::BadRequest(
                "a password must have at least 8 characters".into(),
            ));
        }
        let hash = hash_password(password)?;
        self.conn()?
            .execute(
                "INSERT INTO users (name, role, password_hash, created_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (name) DO UPDATE SET role = excluded.role, password_hash = excluded.password_hash",
                params![name, role.as_str(), hash, now()],
            )
            .store("saving a user")?;
        // A new password ends the user's sessions.
        self.conn()?
            .execute("DELETE FROM sessions WHERE user_name = ?1", [name])
            .store("ending sessions")?;
        Ok(())
    }

    pub fn users(&self) -> Result<Vec<UserInfo>> {
        let conn = self.conn()?;
        let mut stmt = conn
            .prepare("SELECT name, role FROM users ORDER BY name")
            .store("listing users")?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .store("listing users")?;
        let mut out = Vec::new();
        for row in rows {
            let (name, role) = row.store("listing users")?;
            out.push(UserInfo {
                name,
                role: Role::parse(&role)?,
            });
        }
        Ok(out)
    }

    /// Checks a password (slow by design: run it off the async threads).
    /// A new session on success: `(session id, csrf token, role)`.
    pub fn sign_in(&self, name: &str, password: &str) -> Result<Option<(String, String, Role)>> {
        let row = self
            .conn()?
            .query_row(
                "SELECT role, password_hash FROM users WHERE name = ?1",
                [name],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
            )
            .optional()
            .store("signing in")?;
        // An unknown user costs the same time as a wrong password.
        let known = row.is_some();
        let (role, hash) = row.unwrap_or_else(|| ("viewer".into(), DUMMY_HASH.clone()));
        if Argon2::default()
            .verify_password(password.as_bytes(), hash.as_str())
            .is_err()
            || !known
        {
            return Ok(None);
        }
        let id = random_text(32)?;
        let csrf = random_text(24)?;
        let expires = (chrono::Utc::now() + chrono::Duration::hours(SESSION_HOURS)).to_rfc3339();
        self.conn()?
            .execute(
                "INSERT INTO sessions (id_hash, user_name, csrf, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![sha256_hex(id.as_bytes()), name, csrf, now(), expires],
            )
            .store("opening a session")?;
        Ok(Some((id, csrf, Role::parse(&role)?)))
    }

    /// The principal of a session cookie, if the session is live.
    pub fn authenticate_session(&self, id: &str) -> Result<Option<Principal>> {
        let row = self
            .conn()?
            .query_row(
                "SELECT s.user_name, u.role, s.csrf, s.expires_at FROM sessions s JOIN users u ON u.name = s.user_name WHERE s.id_hash = ?1",
                [sha256_hex(id.as_bytes())],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                    ))
                },
            )
            .optional()
            .store("checking a session")?;
        let Some((user, role, csrf, expires_at)) = row else {
            return Ok(None);
        };
        if expired(Some(&expires_at)) {
            return Ok(None);
        }
        Ok(Some(Principal {
            who: format!("user {user}"),
            role: Role::parse(&role)?,
            csrf: Some(csrf),
        }))
    }

    pub fn end_session(&self, id: &str) -> Result<()> {
        self.conn()?
            .execute(
                "DELETE FROM sessions WHERE id_hash = ?1 OR expires_at < ?2",
                params![sha256_hex(id.as_bytes()), chrono::Utc::now().to_rfc3339()],
            )
            .store("ending a session")?;
        Ok(())
    }
}

fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|e| ServeError::Home(format!("no randomness: {e}")))?;
    Ok(buf)
}

fn expired(expires_at: Option<&str>) -> bool {
    expires_at.is_some_and(|at| {
        chrono::DateTime::parse_from_rfc3339(at).map_or(true, |at| at <= chrono::Utc::now())
    })
}

/// Verified against for unknown users, so that they take as long.
static DUMMY_HASH: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| hash_password("no user has this password").unwrap_or_default());

/// argon2id with its default cost and a random salt, in PHC form.
fn hash_password(password: &str) -> Result<String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| ServeError::Home(format!("hashing a password: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, ServiceStore) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = ServiceStore::open(&dir.path().join("service.db")).expect("opens");
        (dir, store)
    }

    #[test]
    fn tokens_authenticate_until_revoked_or_expired() {
        let (_dir, store) = store();
        let t = store
            .create_token("ci", Role::Operator, None)
            .expect("token");
        let p = store
            .authenticate_token(&t.token)
            .expect("ok")
            .expect("valid");
        assert_eq!((p.role, p.who.as_str()), (Role::Operator, "token ci"));
        assert!(
            store
                .authenticate_token(&format!("{}x", t.token))
                .expect("ok")
                .is_none()
        );
        assert!(store.revoke_token(&t.id).expect("revokes"));
        assert!(store.authenticate_token(&t.token).expect("ok").is_none());
        let short = store
            .create_token(
                "short",
                Role::Viewer,
                Some(std::time::Duration::from_secs(0)),
            )
            .expect("token");
        assert!(
            store
                .authenticate_token(&short.token)
                .expect("ok")
                .is_none()
        );
    }

    #[test]
    fn passwords_open_sessions() {
        let (_dir, store) = store();
        store
            .add_user("ann", Role::Admin, "correct horse")
            .expect("user");
        assert!(store.sign_in("ann", "wrong pass").expect("ok").is_none());
        assert!(store.sign_in("bob", "correct horse").expect("ok").is_none());
        let (id, csrf, role) = store
            .sign_in("ann", "correct horse")
            .expect("ok")
            .expect("in");
        assert_eq!(role, Role::Admin);
        let p = store.authenticate_session(&id).expect("ok").expect("live");
        assert_eq!(p.csrf.as_deref(), Some(csrf.as_str()));
        store.end_session(&id).expect("ends");
        assert!(store.authenticate_session(&id).expect("ok").is_none());
    }
}
