//! Accounts: sign-up, sign-in with Argon2id and throttling, sessions with a
//! CSRF token each.

use std::fmt;
use std::net::IpAddr;
use std::sync::OnceLock;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use chrono::{DateTime, Utc};
use coffer_core::{UserId, VaultId};
use serde::Serialize;

use crate::store::accounts::{self as store, NewSessionRow, UserRow};
use crate::util::{ct_eq, from_micros, hash, micros, new_secret, random_bytes};
use crate::{Error, OAuthServer};

/// Shortest password accepted, in characters.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longest password accepted, in bytes (bounds the hashing work).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// A user account: one person, one vault.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct User {
    /// The user's id.
    pub id: UserId,
    /// The email address as the user typed it (unique ignoring case).
    pub email: String,
    /// The user's vault.
    pub vault_id: VaultId,
    /// When the account was created.
    pub created_at: DateTime<Utc>,
}

/// A session just created: give `token` to the browser (cookie: `HttpOnly`,
/// `Secure`, `SameSite=Lax`) and put `csrf_token` into every form.
#[derive(Clone)]
pub struct NewSession {
    /// The session token (secret; only its hash is stored).
    pub token: String,
    /// The session's CSRF token.
    pub csrf_token: String,
    /// When the session ends.
    pub expires_at: DateTime<Utc>,
}

impl fmt::Debug for NewSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewSession")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// A live session, found by its token.
#[derive(Clone)]
pub struct Session {
    /// The signed-in user.
    pub user: User,
    /// The session's CSRF token, to embed in forms.
    pub csrf_token: String,
    /// When the session started.
    pub created_at: DateTime<Utc>,
    /// When it ends.
    pub expires_at: DateTime<Utc>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("user", &self.user)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Checks a form's CSRF token against the session's, in constant time.
    pub fn check_csrf(&self, submitted: &str) -> Result<(), Error> {
        if ct_eq(submitted.as_bytes(), self.csrf_token.as_bytes()) {
            Ok(())
        } else {
            Err(Error::Csrf)
        }
    }
}

impl UserRow {
    /// The user.
    fn into_user(self) -> Result<User, Error> {
        Ok(User {
            id: self
                .id
                .parse()
                .map_err(|e| Error::Internal(format!("stored user: {e}")))?,
            email: self.email,
            vault_id: self
                .vault_id
                .parse()
                .map_err(|e| Error::Internal(format!("stored user: {e}")))?,
            created_at: from_micros(self.created_at),
        })
    }
}

/// The key an email is unique by: trimmed and lower-cased.
fn email_key(email: &str) -> String {
    email.trim().to_lowercase()
}

/// A plausible email address: one `@`, a non-empty local part of at most 64
/// bytes, a domain with a dot, no spaces or control characters, at most 254
/// bytes in all.
fn validate_email(email: &str) -> Result<&str, Error> {
    let email = email.trim();
    let (local, domain) = email.split_once('@').ok_or(Error::InvalidEmail)?;
    let ok = email.len() <= 254
        && !local.is_empty()
        && local.len() <= 64
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok { Ok(email) } else { Err(Error::InvalidEmail) }
}

fn validate_password(password: &str) -> Result<(), Error> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(Error::InvalidPassword(format!(
            "the password must have at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(Error::InvalidPassword(format!(
            "the password must have at most {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    Ok(())
}

/// Argon2id with the crate's default parameters (19 MiB, 2 passes, 1 lane:
/// the OWASP recommendation), as a PHC string.
fn hash_password(password: &str) -> Result<String, Error> {
    let salt =
        SaltString::encode_b64(&random_bytes::<16>()?).map_err(|e| Error::Internal(format!("password salt: {e}")))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::Internal(format!("password hashing failed: {e}")))
}

/// Whether `password` matches the PHC string `stored` (Argon2 compares in
/// constant time).
fn verify_password(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored)
        .map(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
        .unwrap_or(false)
}

/// A hash of a random password, verified against when the email is unknown
/// so that unknown and known emails take the same time.
fn dummy_hash() -> Result<&'static str, Error> {
    static DUMMY: OnceLock<String> = OnceLock::new();
    if let Some(h) = DUMMY.get() {
        return Ok(h);
    }
    let h = hash_password(&crate::util::new_secret()?)?;
    Ok(DUMMY.get_or_init(|| h))
}

/// Runs CPU-heavy password work off the async executor.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("password task failed: {e}")))
}

/// The key a client address is throttled by: IPv4 as is, IPv6 by its /64
/// (one host usually holds a whole /64), IPv4-mapped IPv6 as IPv4. Used for
/// failed sign-ins here and for registrations by the web layer.
pub fn address_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

impl OAuthServer {
    /// Checks an email and password for sign-up without creating anything:
    /// call it before creating the vault, then [`OAuthServer::sign_up`].
    pub async fn check_sign_up(&self, email: &str, password: &str) -> Result<(), Error> {
        let email = validate_email(email)?;
        validate_password(password)?;
        if store::email_taken(&self.pool, &email_key(email)).await? {
            return Err(Error::EmailTaken);
        }
        Ok(())
    }

    /// Creates an account for `email` owning `vault_id` (a vault the caller
    /// has just created). The password is hashed with Argon2id.
    pub async fn sign_up(&self, email: &str, password: &str, vault_id: VaultId) -> Result<User, Error> {
        let email = validate_email(email)?.to_owned();
        validate_password(password)?;
        let password = password.to_owned();
        let password_hash = blocking(move || hash_password(&password)).await??;
        let user = User {
            id: UserId::generate(),
            email,
            vault_id,
            created_at: self.now(),
        };
        let result = store::insert_user(&self.pool, &user, &email_key(&user.email), &password_hash).await;
        match result {
            Ok(_) => Ok(user),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() && e.message().contains("email_key") => {
                Err(Error::EmailTaken)
            }
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(Error::invalid_request("this vault already belongs to a user"))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Signs in. After `login_max_failures` failures for this email from
    /// this address within `login_window`, refuses with
    /// [`Error::Throttled`] (without checking the password) until the oldest
    /// counted failure leaves the window. An unknown email costs the same
    /// time as a wrong password and counts as a failure.
    pub async fn sign_in(&self, email: &str, password: &str, client_ip: IpAddr) -> Result<User, Error> {
        let key = email_key(email);
        let ip = address_key(client_ip);
        let now = self.now();
        let window = self.config.login_window;
        let max = i64::from(self.config.login_max_failures.max(1));
        let recent = store::recent_failures(&self.pool, &key, &ip, micros(now - window), max).await?;
        if recent.len() as i64 >= max
            && let Some(oldest) = recent.last()
        {
            let until = from_micros(*oldest) + window;
            let secs = (until - now).num_seconds().max(1);
            return Err(Error::Throttled {
                retry_after_secs: u64::try_from(secs).unwrap_or(1),
            });
        }

        let row = store::find_credentials(&self.pool, &key).await?;
        let stored = match &row {
            Some(r) => r.password_hash.clone(),
            None => dummy_hash()?.to_owned(),
        };
        let password = password.to_owned();
        let ok = blocking(move || verify_password(&password, &stored)).await? && row.is_some();
        match row {
            Some(r) if ok => {
                store::clear_failures(&self.pool, &key, &ip).await?;
                r.user.into_user()
            }
            _ => {
                store::record_failure(&self.pool, &key, &ip, micros(now)).await?;
                Err(Error::InvalidCredentials)
            }
        }
    }

    /// Starts a session for `user` lasting `session_lifetime`.
    pub async fn create_session(&self, user: UserId) -> Result<NewSession, Error> {
        let token = new_secret()?;
        let csrf_token = new_secret()?;
        let now = self.now();
        let expires_at = now + self.config.session_lifetime;
        store::insert_session(
            &self.pool,
            &NewSessionRow {
                token_hash: &hash(&token),
                user_id: &user.to_string(),
                csrf_token: &csrf_token,
                created_at: micros(now),
                expires_at: micros(expires_at),
            },
        )
        .await?;
        Ok(NewSession {
            token,
            csrf_token,
            expires_at,
        })
    }

    /// The live session of a session token; [`Error::InvalidSession`] if it
    /// is unknown, expired or signed out.
    pub async fn session(&self, token: &str) -> Result<Session, Error> {
        let Some(row) = store::find_session(&self.pool, &hash(token)).await? else {
            return Err(Error::InvalidSession);
        };
        let expires_at = from_micros(row.expires_at);
        if expires_at <= self.now() {
            self.sign_out(token).await?;
            return Err(Error::InvalidSession);
        }
        Ok(Session {
            user: row.user.into_user()?,
            csrf_token: row.csrf_token,
            created_at: from_micros(row.session_created_at),
            expires_at,
        })
    }

    /// Ends a session (unknown tokens are ignored).
    pub async fn sign_out(&self, token: &str) -> Result<(), Error> {
        Ok(store::delete_session(&self.pool, &hash(token)).await?)
    }

    /// Ends every session of `user` (e.g. after a password change).
    pub async fn sign_out_everywhere(&self, user: UserId) -> Result<u64, Error> {
        Ok(store::delete_sessions_of(&self.pool, &user.to_string()).await?)
    }

    /// One user.
    pub async fn user(&self, id: UserId) -> Result<User, Error> {
        store::find_user(&self.pool, &id.to_string())
            .await?
            .ok_or(Error::NotFound("user"))?
            .into_user()
    }

    /// Every user, oldest first.
    pub async fn list_users(&self) -> Result<Vec<User>, Error> {
        store::list_users(&self.pool)
            .await?
            .into_iter()
            .map(UserRow::into_user)
            .collect()
    }
}

impl OAuthServer {
    /// Deletes a user's account and every row the authorization server keeps
    /// about it, in one transaction: its grants, their token families,
    /// refresh tokens, access token records, authorization and device codes,
    /// its sessions and sign-in failures, and the user; apps it registered
    /// stay but no longer name it. The grants leave this process's
    /// revocation view, so their tokens are refused from now on. The user's
    /// vault is not touched: delete it with the storage engine (erasure of
    /// an account is `coffer::accounts::delete_account`). Pushed
    /// authorization requests name an app, never a user, and expire within
    /// minutes; they are not looked at. Returns how many rows went (the
    /// user's included); a user that does not exist is `NotFound`.
    pub async fn delete_account(&self, user: UserId) -> Result<u64, Error> {
        let id = user.to_string();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let email_key = store::email_key_of(&mut *tx, &id)
            .await?
            .ok_or(Error::NotFound("user"))?;
        let grants = crate::store::grants::ids_of_user(&mut *tx, &id).await?;
        let rows = store::delete_user(&mut tx, &id, &email_key).await?;
        tx.commit().await?;
        for grant in grants {
            if let Ok(grant) = grant.parse() {
                self.revocation.remove_grant(grant);
            }
        }
        Ok(rows)
    }
}
