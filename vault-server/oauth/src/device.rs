//! Device authorization (RFC 8628) for CLIs and agents: the device asks for
//! a code pair, the user enters the user code on the verification page and
//! consents, the device polls the token endpoint.

use std::fmt;

use chrono::{DateTime, Utc};
use coffer_auth::GrantSpec;
use coffer_core::{AppId, UserId};
use serde::Serialize;

use crate::dpop::DpopProof;
use crate::grants::{parse_spec, spec_json};
use crate::store::device::{self as store, NewDeviceCode};
use crate::tokens::{TokenResponse, seconds_until, settle_issue};
use crate::util::{from_micros, hash, micros, new_secret, random_bytes};
use crate::{ClientCredentials, Error, ErrorCode, GrantType, OAuthServer, endpoints};

/// The letters of user codes: consonants without ambiguous ones (no vowels,
/// so no words; no I, O, U, Y), as RFC 8628 §6.1 suggests.
pub const USER_CODE_ALPHABET: &[u8; 20] = b"BCDFGHJKLMNPQRSTVWXZ";
/// Letters in a user code (shown as `XXXX-XXXX`).
pub const USER_CODE_LEN: usize = 8;

/// The device authorization response (RFC 8628 §3.2).
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct DeviceAuthorization {
    /// The device code the device polls with (secret).
    pub device_code: String,
    /// The code the user types, `XXXX-XXXX`.
    pub user_code: String,
    /// Where the user goes.
    pub verification_uri: String,
    /// The same with the user code filled in.
    pub verification_uri_complete: String,
    /// Seconds until the codes expire.
    pub expires_in: i64,
    /// Seconds to wait between polls.
    pub interval: i64,
}

impl fmt::Debug for DeviceAuthorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceAuthorization")
            .field("user_code", &self.user_code)
            .field("verification_uri", &self.verification_uri)
            .field("expires_in", &self.expires_in)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

/// A pending device request, for the verification page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceRequest {
    /// The user code, `XXXX-XXXX`.
    pub user_code: String,
    /// The app.
    pub client_id: AppId,
    /// The app's name.
    pub app_name: String,
    /// What the app asks for.
    pub requested: GrantSpec,
    /// When the request expires.
    pub expires_at: DateTime<Utc>,
}

/// A new random user code (8 letters of the alphabet, unbiased).
fn new_user_code() -> Result<String, Error> {
    let mut code = String::with_capacity(USER_CODE_LEN);
    while code.len() < USER_CODE_LEN {
        for b in random_bytes::<16>()? {
            // 240 = 12 × 20: rejecting the rest keeps every letter equally likely.
            if b < 240 && code.len() < USER_CODE_LEN {
                code.push(char::from(USER_CODE_ALPHABET[usize::from(b % 20)]));
            }
        }
    }
    Ok(code)
}

/// The stored form of a typed user code: upper case, without dashes and
/// spaces; `None` if it cannot be a user code.
fn normalize_user_code(typed: &str) -> Option<String> {
    let code: String = typed
        .chars()
        .filter(|c| *c != '-' && !c.is_whitespace())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    (code.len() == USER_CODE_LEN && code.bytes().all(|b| USER_CODE_ALPHABET.contains(&b))).then_some(code)
}

/// `BCDFGHJK` → `BCDF-GHJK`.
fn format_user_code(code: &str) -> String {
    let (a, b) = code.split_at(code.len().min(USER_CODE_LEN / 2));
    format!("{a}-{b}")
}

impl OAuthServer {
    /// The user-facing verification URI (`{issuer}/device`).
    pub fn verification_uri(&self) -> String {
        format!("{}{}", self.config.issuer, endpoints::DEVICE_VERIFICATION)
    }

    /// RFC 8628 §3.1: a client (registered for the device code grant) asks
    /// for a device code and a user code for `scope` and/or
    /// `authorization_details` (or its default scope).
    pub async fn start_device_authorization(
        &self,
        client: &ClientCredentials,
        scope: Option<&str>,
        authorization_details: Option<&str>,
    ) -> Result<DeviceAuthorization, Error> {
        let app = self.client_for(client, GrantType::DeviceCode, "device code").await?;
        let requested = self.resolve_request(scope, authorization_details, &app)?;
        let device_code = new_secret()?;
        let now = self.now();
        let interval = self.config.device_poll_interval.num_seconds().max(1);
        let device_code_hash = hash(&device_code);
        let spec = spec_json(&requested)?;
        let mut attempts = 0;
        let user_code = loop {
            let user_code = new_user_code()?;
            let new = NewDeviceCode {
                device_code_hash: &device_code_hash,
                user_code: &user_code,
                app_id: app.client_id.as_str(),
                spec: &spec,
                created_at: micros(now),
                expires_at: micros(now + self.config.device_code_lifetime),
                interval_secs: interval,
            };
            match store::insert(&self.pool, &new).await {
                Ok(_) => break user_code,
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() && attempts < 5 => {
                    // A user code still stored (perhaps expired): free expired ones and retry.
                    attempts += 1;
                    store::delete_expired(&self.pool, micros(now)).await?;
                }
                Err(e) => return Err(e.into()),
            }
        };
        let shown = format_user_code(&user_code);
        let verification_uri = self.verification_uri();
        let verification_uri_complete = crate::authorize::with_query(&verification_uri, &[("user_code", &shown)])?;
        Ok(DeviceAuthorization {
            device_code,
            user_code: shown,
            verification_uri,
            verification_uri_complete,
            expires_in: self.config.device_code_lifetime.num_seconds(),
            interval,
        })
    }

    /// The pending request of a user code as typed (case, dashes and spaces
    /// do not matter). [`Error::NotFound`] if it is unknown, expired or
    /// already answered. Rate-limit this page per session: user codes have
    /// about 34.6 bits.
    pub async fn device_lookup(&self, user_code: &str) -> Result<DeviceRequest, Error> {
        let code = normalize_user_code(user_code).ok_or(Error::NotFound("device code"))?;
        let row = store::find_pending(&self.pool, &code, micros(self.now()))
            .await?
            .ok_or(Error::NotFound("device code"))?;
        Ok(DeviceRequest {
            user_code: format_user_code(&code),
            client_id: AppId::new(row.app_id),
            app_name: row.app_name,
            requested: parse_spec(&row.spec)?,
            expires_at: from_micros(row.expires_at),
        })
    }

    /// The user allows `approved` (intersected with the request) for a user
    /// code: creates or widens the grant; the device's next poll gets the
    /// tokens. Returns what was approved; an empty approval is a denial.
    pub async fn device_approve(
        &self,
        user: UserId,
        user_code: &str,
        approved: &GrantSpec,
    ) -> Result<GrantSpec, Error> {
        let request = self.device_lookup(user_code).await?;
        let effective = request.requested.intersect(approved);
        if effective.is_empty() {
            self.device_deny(user_code).await?;
            return Ok(effective);
        }
        let owner = self.user(user).await?;
        let code = normalize_user_code(user_code).ok_or(Error::NotFound("device code"))?;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let upserted = self
            .upsert_grant(&mut tx, user, owner.vault_id, &request.client_id, &effective)
            .await?;
        let family = self
            .create_family(&mut tx, &request.client_id, &upserted.grant, &effective)
            .await?;
        let updated = store::approve(
            &mut *tx,
            &code,
            micros(self.now()),
            &user.to_string(),
            &upserted.grant.id.to_string(),
            &family,
        )
        .await?;
        if updated != 1 {
            return Err(Error::NotFound("device code"));
        }
        tx.commit().await?;
        if upserted.changed {
            self.revocation
                .set_grant(upserted.grant.id, upserted.grant.version, upserted.grant.status);
        }
        Ok(effective)
    }

    /// The user refuses a user code; the device's next poll gets
    /// `access_denied`.
    pub async fn device_deny(&self, user_code: &str) -> Result<(), Error> {
        let code = normalize_user_code(user_code).ok_or(Error::NotFound("device code"))?;
        let updated = store::deny(&self.pool, &code, micros(self.now())).await?;
        if updated == 1 {
            Ok(())
        } else {
            Err(Error::NotFound("device code"))
        }
    }

    /// RFC 8628 §3.4–3.5: the device polls with its device code.
    /// `authorization_pending` until the user answers, `slow_down` (and the
    /// interval grows by 5 s) if polled faster than the interval,
    /// `access_denied` if refused, `expired_token` after expiry; once
    /// approved, the tokens, once.
    pub async fn poll_device(
        &self,
        client: &ClientCredentials,
        device_code: &str,
        dpop: Option<&DpopProof>,
    ) -> Result<TokenResponse, Error> {
        let app = self.client_for(client, GrantType::DeviceCode, "device code").await?;
        let jkt = self.proven_key(dpop).await?;
        let now = self.now();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let device_code_hash = hash(device_code);
        let Some(row) = store::find_for_poll(&mut *tx, &device_code_hash).await? else {
            return Err(Error::invalid_grant("the device code is invalid"));
        };
        let interval = row.interval_secs;
        if row.app_id != app.client_id.as_str() {
            return Err(Error::invalid_grant("the device code was issued to another client"));
        }
        if row.status == "used" {
            return Err(Error::invalid_grant("the device code was already used"));
        }
        if now >= from_micros(row.expires_at) {
            return Err(Error::oauth(
                ErrorCode::ExpiredToken,
                "the device code expired; start again",
            ));
        }
        if let Some(last) = row.last_poll_at
            && seconds_until(from_micros(last), now) < interval
        {
            store::slow_down(&mut *tx, &device_code_hash, micros(now)).await?;
            tx.commit().await?;
            return Err(Error::oauth(
                ErrorCode::SlowDown,
                format!("polling too fast; wait at least {} seconds between polls", interval + 5),
            ));
        }
        store::record_poll(&mut *tx, &device_code_hash, micros(now)).await?;
        match row.status.as_str() {
            "pending" => {
                tx.commit().await?;
                Err(Error::oauth(
                    ErrorCode::AuthorizationPending,
                    "the user has not answered yet",
                ))
            }
            "denied" => {
                tx.commit().await?;
                Err(Error::access_denied("the user did not allow access"))
            }
            _ => {
                let (Some(grant_id), Some(family)) = (&row.grant_id, &row.family_id) else {
                    return Err(Error::Internal("approved device code without grant".into()));
                };
                store::mark_used(&mut *tx, &device_code_hash).await?;
                let issued = self.issue_first(&mut tx, &app, family, grant_id, jkt.as_deref()).await;
                settle_issue(tx, issued).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_codes_use_the_alphabet_and_normalize() {
        for _ in 0..200 {
            let code = new_user_code().unwrap();
            assert_eq!(code.len(), USER_CODE_LEN);
            assert!(code.bytes().all(|b| USER_CODE_ALPHABET.contains(&b)));
            let shown = format_user_code(&code);
            assert_eq!(shown.len(), 9);
            assert_eq!(normalize_user_code(&shown.to_lowercase()), Some(code.clone()));
            assert_eq!(
                normalize_user_code(&format!(" {} ", shown.replace('-', " "))),
                Some(code)
            );
        }
        assert_eq!(normalize_user_code("BCDF-GHJ"), None);
        assert_eq!(normalize_user_code("BCDF-GHJA"), None);
        assert_eq!(normalize_user_code("BCDF-GHJK-L"), None);
    }
}
