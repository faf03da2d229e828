//! Accounts: sign-up, sign-in throttling, sessions and CSRF.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use chrono::TimeDelta;
use coffer_core::VaultId;
use coffer_oauth::{Error, ErrorCode};
use common::*;

async fn vault(env: &Env) -> VaultId {
    let vault = VaultId::generate();
    sqlx::query("INSERT INTO vaults (id, created_at) VALUES (?, 0)")
        .bind(vault.to_string())
        .execute(&env.pool)
        .await
        .unwrap();
    vault
}

#[tokio::test]
async fn sign_up_validates_and_emails_are_unique_ignoring_case() {
    let env = env().await;
    let v = vault(&env).await;
    assert!(matches!(
        env.server.sign_up("not-an-email", "long enough pw", v).await,
        Err(Error::InvalidEmail)
    ));
    assert!(matches!(
        env.server.sign_up("a@b", "long enough pw", v).await,
        Err(Error::InvalidEmail)
    ));
    assert!(matches!(
        env.server.sign_up("a@example.org", "short", v).await,
        Err(Error::InvalidPassword(_))
    ));
    env.server
        .check_sign_up("Ada@Example.org", "long enough pw")
        .await
        .unwrap();
    let user = env
        .server
        .sign_up(" Ada@Example.org ", "long enough pw", v)
        .await
        .unwrap();
    assert_eq!(user.email, "Ada@Example.org");
    assert_eq!(user.vault_id, v);
    let v2 = vault(&env).await;
    assert!(matches!(
        env.server.check_sign_up("ada@example.ORG", "long enough pw").await,
        Err(Error::EmailTaken)
    ));
    assert!(matches!(
        env.server.sign_up("ada@example.ORG", "long enough pw", v2).await,
        Err(Error::EmailTaken)
    ));
    // One user per vault.
    let err = env
        .server
        .sign_up("bob@example.org", "long enough pw", v)
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidRequest);
    assert_eq!(env.server.list_users().await.unwrap(), vec![user.clone()]);
    assert_eq!(env.server.user(user.id).await.unwrap(), user);

    // Sign-in ignores case; the password is not stored in the clear.
    let signed_in = env
        .server
        .sign_in("ADA@example.org", "long enough pw", IP)
        .await
        .unwrap();
    assert_eq!(signed_in.id, user.id);
    let stored: String = sqlx::query_scalar("SELECT password_hash FROM users")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert!(stored.starts_with("$argon2id$"));
    assert!(!stored.contains("long enough pw"));
}

#[tokio::test]
async fn repeated_bad_passwords_are_throttled() {
    let env = env().await;
    let user = env.user("ada@example.org").await;
    for _ in 0..5 {
        assert!(matches!(
            env.server.sign_in("ada@example.org", "wrong password", IP).await,
            Err(Error::InvalidCredentials)
        ));
    }
    // Now even the right password is refused, with a clear error.
    let err = env
        .server
        .sign_in("ada@example.org", "correct horse battery", IP)
        .await
        .unwrap_err();
    let Error::Throttled { retry_after_secs } = err else {
        panic!("expected throttling, got {err:?}");
    };
    assert!(retry_after_secs > 0 && retry_after_secs <= 15 * 60);
    assert_eq!(err.http_status(), 429);
    assert_eq!(err.code(), ErrorCode::TemporarilyUnavailable);
    assert!(err.to_string().contains("try again"));

    // Another address is not affected; an unknown email counts the same way.
    let other = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1));
    assert_eq!(
        env.server
            .sign_in("ada@example.org", "correct horse battery", other)
            .await
            .unwrap()
            .id,
        user.id
    );
    for _ in 0..5 {
        assert!(matches!(
            env.server.sign_in("nobody@example.org", "whatever1", other).await,
            Err(Error::InvalidCredentials)
        ));
    }
    assert!(matches!(
        env.server.sign_in("nobody@example.org", "whatever1", other).await,
        Err(Error::Throttled { .. })
    ));

    // IPv6 addresses are throttled per /64.
    let a = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 0, 0, 0, 1));
    let b = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 9, 9, 9, 9));
    for _ in 0..5 {
        let _ = env.server.sign_in("ada@example.org", "wrong password", a).await;
    }
    assert!(matches!(
        env.server.sign_in("ada@example.org", "correct horse battery", b).await,
        Err(Error::Throttled { .. })
    ));

    // After the window, sign-in works again and clears the failures.
    env.advance(TimeDelta::minutes(15) + TimeDelta::seconds(1));
    assert_eq!(
        env.server
            .sign_in("ada@example.org", "correct horse battery", IP)
            .await
            .unwrap()
            .id,
        user.id
    );
    for _ in 0..4 {
        let _ = env.server.sign_in("ada@example.org", "wrong password", IP).await;
    }
    assert!(
        env.server
            .sign_in("ada@example.org", "correct horse battery", IP)
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn sessions_and_csrf() {
    let env = env().await;
    let user = env.user("ada@example.org").await;
    let new = env.server.create_session(user.id).await.unwrap();
    assert_eq!(new.token.len(), 43);
    assert!(!format!("{new:?}").contains(&new.token));
    let session = env.server.session(&new.token).await.unwrap();
    assert_eq!(session.user, user);
    assert_eq!(session.csrf_token, new.csrf_token);
    session.check_csrf(&new.csrf_token).unwrap();
    assert!(matches!(session.check_csrf("forged"), Err(Error::Csrf)));
    assert!(matches!(session.check_csrf(""), Err(Error::Csrf)));

    // Only the hash of the token is stored.
    let stored: Vec<u8> = sqlx::query_scalar("SELECT token_hash FROM sessions")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(stored.len(), 32);
    assert!(matches!(env.server.session("nope").await, Err(Error::InvalidSession)));

    // Sign out ends it; expiry ends the others.
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
