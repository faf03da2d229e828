//! Accounts: sign-up, sign-in throttling, sessions and CSRF.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use chrono::TimeDelta;
use coffer_oauth::{Error, ErrorCode, User};
use common::*;

const PASSWORD: &str = "long enough pw";
/// The password [`Env::user`] signs up with.
const RIGHT: &str = "correct horse battery";
const WRONG: &str = "wrong password";

async fn sign_in(env: &Env, email: &str, password: &str, ip: IpAddr) -> Result<User, Error> {
    env.server.sign_in(email, password, ip).await
}

/// An env with the user ada@example.org.
async fn with_ada() -> (Env, User) {
    let env = env().await;
    let user = env.user("ada@example.org").await;
    (env, user)
}

/// Whether signing in as `email` from `ip` is refused for throttling.
async fn throttled(env: &Env, email: &str, password: &str, ip: IpAddr) -> bool {
    matches!(sign_in(env, email, password, ip).await, Err(Error::Throttled { .. }))
}

/// Signs in `times` times with a wrong password, each refused as such.
async fn fail(env: &Env, email: &str, ip: IpAddr, times: usize) {
    for _ in 0..times {
        let refused = sign_in(env, email, WRONG, ip).await;
        assert!(matches!(refused, Err(Error::InvalidCredentials)), "{refused:?}");
    }
}

#[tokio::test]
async fn sign_up_validates_the_email_and_the_password() {
    let env = env().await;
    let v = env.vault().await;
    for (email, password) in [("not-an-email", PASSWORD), ("a@b", PASSWORD)] {
        let refused = env.server.sign_up(email, password, v).await;
        assert!(matches!(refused, Err(Error::InvalidEmail)), "{email}");
    }
    assert!(matches!(
        env.server.sign_up("a@example.org", "short", v).await,
        Err(Error::InvalidPassword(_))
    ));
}

#[tokio::test]
async fn emails_are_unique_ignoring_case() {
    let env = env().await;
    env.server.check_sign_up("Ada@Example.org", PASSWORD).await.unwrap();
    let v = env.vault().await;
    let user = env.server.sign_up(" Ada@Example.org ", PASSWORD, v).await.unwrap();
    assert_eq!(user.email, "Ada@Example.org");
    assert_eq!(user.vault_id, v);
    let v2 = env.vault().await;
    assert!(matches!(
        env.server.check_sign_up("ada@example.ORG", PASSWORD).await,
        Err(Error::EmailTaken)
    ));
    assert!(matches!(
        env.server.sign_up("ada@example.ORG", PASSWORD, v2).await,
        Err(Error::EmailTaken)
    ));
}

#[tokio::test]
async fn one_user_per_vault() {
    let env = env().await;
    let v = env.vault().await;
    let user = env.server.sign_up("ada@example.org", PASSWORD, v).await.unwrap();
    let err = env.server.sign_up("bob@example.org", PASSWORD, v).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidRequest);
    assert_eq!(env.server.list_users().await.unwrap(), vec![user.clone()]);
    assert_eq!(env.server.user(user.id).await.unwrap(), user);
}

#[tokio::test]
async fn sign_in_ignores_case_and_the_password_is_not_stored_in_the_clear() {
    let env = env().await;
    let user = env.user("Ada@Example.org").await;
    let signed_in = sign_in(&env, "ADA@example.org", RIGHT, IP).await.unwrap();
    assert_eq!(signed_in.id, user.id);
    let stored: String = sqlx::query_scalar("SELECT password_hash FROM users")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert!(stored.starts_with("$argon2id$"));
    assert!(!stored.contains(RIGHT));
}

#[tokio::test]
async fn repeated_bad_passwords_are_throttled() {
    let (env, _) = with_ada().await;
    fail(&env, "ada@example.org", IP, 5).await;
    // Now even the right password is refused, with a clear error.
    let err = sign_in(&env, "ada@example.org", RIGHT, IP).await.unwrap_err();
    let Error::Throttled { retry_after_secs } = err else {
        panic!("expected throttling, got {err:?}");
    };
    assert!(retry_after_secs > 0 && retry_after_secs <= 15 * 60);
    assert_eq!(err.http_status(), 429);
    assert_eq!(err.code(), ErrorCode::TemporarilyUnavailable);
    assert!(err.to_string().contains("try again"));
}

#[tokio::test]
async fn throttling_is_per_address_and_counts_unknown_emails_the_same_way() {
    let (env, user) = with_ada().await;
    fail(&env, "ada@example.org", IP, 5).await;
    let other = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1));
    assert_eq!(
        sign_in(&env, "ada@example.org", RIGHT, other).await.unwrap().id,
        user.id
    );
    fail(&env, "nobody@example.org", other, 5).await;
    assert!(throttled(&env, "nobody@example.org", WRONG, other).await);
}

#[tokio::test]
async fn ipv6_addresses_are_throttled_per_64() {
    let (env, _) = with_ada().await;
    let a = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 0, 0, 0, 1));
    let b = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 9, 9, 9, 9));
    fail(&env, "ada@example.org", a, 5).await;
    assert!(throttled(&env, "ada@example.org", RIGHT, b).await);
}

#[tokio::test]
async fn after_the_window_sign_in_works_again_and_clears_the_failures() {
    let (env, user) = with_ada().await;
    fail(&env, "ada@example.org", IP, 5).await;
    env.advance(TimeDelta::minutes(15) + TimeDelta::seconds(1));
    assert_eq!(sign_in(&env, "ada@example.org", RIGHT, IP).await.unwrap().id, user.id);
    fail(&env, "ada@example.org", IP, 4).await;
    assert!(sign_in(&env, "ada@example.org", RIGHT, IP).await.is_ok());
}

#[tokio::test]
async fn sessions_check_their_csrf_token() {
    let (env, user) = with_ada().await;
    let new = env.server.create_session(user.id).await.unwrap();
    assert_eq!(new.token.len(), 43);
    assert!(!format!("{new:?}").contains(&new.token));
    let session = env.server.session(&new.token).await.unwrap();
    assert_eq!(session.user, user);
    assert_eq!(session.csrf_token, new.csrf_token);
    session.check_csrf(&new.csrf_token).unwrap();
    assert!(matches!(session.check_csrf("forged"), Err(Error::Csrf)));
    assert!(matches!(session.check_csrf(""), Err(Error::Csrf)));
}

#[tokio::test]
async fn only_the_hash_of_a_session_token_is_stored() {
    let (env, user) = with_ada().await;
    env.server.create_session(user.id).await.unwrap();
    let stored: Vec<u8> = sqlx::query_scalar("SELECT token_hash FROM sessions")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(stored.len(), 32);
    assert!(matches!(env.server.session("nope").await, Err(Error::InvalidSession)));
}

#[tokio::test]
async fn sign_out_and_expiry_end_sessions() {
    let (env, user) = with_ada().await;
    let new = env.server.create_session(user.id).await.unwrap();
    env.server.sign_out(&new.token).await.unwrap();
    assert!(matches!(
        env.server.session(&new.token).await,
        Err(Error::InvalidSession)
    ));
    let other = env.server.create_session(user.id).await.unwrap();
    env.advance(TimeDelta::hours(24) + TimeDelta::seconds(1));
    assert!(matches!(
        env.server.session(&other.token).await,
        Err(Error::InvalidSession)
    ));
    assert!(env.server.purge_expired().await.is_ok());
}
