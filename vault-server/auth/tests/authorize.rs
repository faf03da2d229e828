//! Tokens and the authorizer: rights, columns, expiry, signatures, vaults,
//! attenuation, revocation and the cached verified token.

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE;
use biscuit_auth::macros::block;
use biscuit_auth::{Biscuit, KeyPair, UnverifiedBiscuit};
use chrono::{TimeDelta, Utc};
use coffer_auth::{
    Action, Attenuation, Authorizer, ColumnSet, DeniedKind, GrantStatus, Request, RevocationView, RootKeyPair,
    RowScope, TokenClaims, TokenError, VerifiedToken, attenuate, mint,
};
use coffer_core::{AppId, VaultId};
use common::{Server, grant, t};
use std::sync::Arc;

fn req(claims: &TokenClaims, table: &str, action: Action) -> Request {
    Request::new(
        claims.vault,
        t(table),
        action,
        claims.issued_at + TimeDelta::seconds(30),
    )
}

#[test]
fn a_token_allows_exactly_its_rights() {
    let s = Server::new();
    let (token, claims) = s.token("contacts.people:read tasks.items:read+create:own", Utc::now());

    let ok = s
        .authz
        .authorize(&token, &req(&claims, "contacts.people", Action::Read))
        .unwrap();
    assert_eq!(ok.vault, claims.vault);
    assert_eq!(ok.app, claims.app);
    assert_eq!(ok.grant_id, claims.grant_id);
    assert_eq!(ok.grant_version, 1);
    assert_eq!(ok.row_scope(), RowScope::All);
    assert_eq!(ok.readable_columns(), Some(&ColumnSet::All));

    let denied = s
        .authz
        .authorize(&token, &req(&claims, "contacts.people", Action::Update))
        .unwrap_err();
    assert_eq!(
        denied.kind,
        DeniedKind::MissingRight {
            required: "contacts.people:update".into()
        }
    );
    assert!(denied.reason.contains("contacts.people:update"), "{}", denied.reason);

    // Every other pair: allowed iff granted.
    for table in ["contacts.people", "tasks.items", "notes.notes"] {
        for action in Action::ALL {
            let granted = claims.grant.allows(&t(table), action);
            let result = s.authz.authorize(&token, &req(&claims, table, action));
            assert_eq!(result.is_ok(), granted, "{table}:{action}");
            if let Err(d) = result {
                assert_eq!(
                    d.kind,
                    DeniedKind::MissingRight {
                        required: format!("{table}:{action}")
                    }
                );
            }
        }
    }
}

#[test]
fn own_row_scope_and_readable_columns_are_exposed() {
    let s = Server::new();
    let (token, claims) = s.token("tasks.items(title):read+create:own tasks.items:update:own", Utc::now());
    let create = s
        .authz
        .authorize(
            &token,
            &req(&claims, "tasks.items", Action::Create).with_columns(["title"]),
        )
        .unwrap();
    assert_eq!(create.row_scope(), RowScope::Own);
    assert_eq!(create.access.columns, ColumnSet::only(["title"]));
    assert_eq!(create.readable_columns(), Some(&ColumnSet::only(["title"])));
    let update = s
        .authz
        .authorize(
            &token,
            &req(&claims, "tasks.items", Action::Update).with_columns(["done"]),
        )
        .unwrap();
    assert_eq!(update.access.columns, ColumnSet::All);
    assert_eq!(update.readable_columns(), Some(&ColumnSet::only(["title"])));

    let (token, claims) = s.token("tasks.items:create", Utc::now());
    let create = s
        .authz
        .authorize(&token, &req(&claims, "tasks.items", Action::Create))
        .unwrap();
    assert_eq!(create.readable_columns(), None);
}

#[test]
fn a_column_not_granted_is_denied() {
    let s = Server::new();
    let (token, claims) = s.token("contacts.people(name,email):read", Utc::now());
    let ok = req(&claims, "contacts.people", Action::Read).with_columns(["id", "name", "_updated_at", "email"]);
    s.authz.authorize(&token, &ok).unwrap();
    let bad = req(&claims, "contacts.people", Action::Read).with_columns(["name", "phone"]);
    let denied = s.authz.authorize(&token, &bad).unwrap_err();
    assert_eq!(
        denied.kind,
        DeniedKind::ColumnNotGranted {
            table: "contacts.people".into(),
            column: "phone".into()
        }
    );
    assert!(denied.reason.contains("phone"));
}

#[test]
fn an_expired_token_is_refused() {
    let s = Server::new();
    let issued = Utc::now() - TimeDelta::minutes(20);
    let (token, claims) = s.token("contacts.people:read", issued);
    let mut r = req(&claims, "contacts.people", Action::Read);
    s.authz.authorize(&token, &r).unwrap();
    r.now = claims.expires_at;
    assert_eq!(s.authz.authorize(&token, &r).unwrap_err().kind, DeniedKind::Expired);
    r.now = Utc::now();
    assert_eq!(s.authz.authorize(&token, &r).unwrap_err().kind, DeniedKind::Expired);
}

#[test]
fn mint_enforces_the_lifetime_and_a_non_empty_grant() {
    let s = Server::new();
    let now = Utc::now();
    let mut claims = s.claims("contacts.people:read", now);
    claims.expires_at = now + TimeDelta::minutes(15) + TimeDelta::seconds(1);
    assert_eq!(mint(&s.root, &claims).unwrap_err(), TokenError::Lifetime);
    claims.expires_at = now;
    assert_eq!(mint(&s.root, &claims).unwrap_err(), TokenError::Lifetime);
    claims.expires_at = now - TimeDelta::minutes(1);
    assert_eq!(mint(&s.root, &claims).unwrap_err(), TokenError::Lifetime);
    claims.expires_at = now + TimeDelta::minutes(15);
    mint(&s.root, &claims).unwrap();
    claims.grant = Default::default();
    assert_eq!(mint(&s.root, &claims).unwrap_err(), TokenError::EmptyGrant);
}

#[test]
fn a_token_with_a_too_long_lifetime_is_refused_even_if_signed() {
    // Minted by other tooling holding the root key, bypassing `mint`.
    let s = Server::new();
    let (good, claims) = s.token("contacts.people:read", Utc::now());
    let src = UnverifiedBiscuit::from_base64(&good)
        .unwrap()
        .print_block_source(0)
        .unwrap();
    let far = (claims.expires_at + TimeDelta::days(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let old = claims.expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let forged_src = src.replace(&old, &far);
    assert_ne!(src, forged_src);
    let key = KeyPair::from(&private_of(&s.root));
    let forged = Biscuit::builder().code(&forged_src).unwrap().build(&key).unwrap();
    let denied = s
        .authz
        .authorize(
            &forged.to_base64().unwrap(),
            &req(&claims, "contacts.people", Action::Read),
        )
        .unwrap_err();
    assert_eq!(denied.kind, DeniedKind::Malformed, "{denied:?}");
}

/// The private key of a root key pair, through its PEM file (tests only).
fn private_of(root: &RootKeyPair) -> biscuit_auth::PrivateKey {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.pem");
    root.save(&path).unwrap();
    let pem = std::fs::read_to_string(&path).unwrap();
    biscuit_auth::PrivateKey::from_pem(&pem).unwrap()
}

#[test]
fn a_token_signed_by_another_key_is_refused() {
    let s = Server::new();
    let other = Server::new();
    let (token, claims) = other.token("contacts.people:read", Utc::now());
    s.view.set_grant(claims.grant_id, 1, GrantStatus::Active);
    let denied = s
        .authz
        .authorize(&token, &req(&claims, "contacts.people", Action::Read))
        .unwrap_err();
    assert_eq!(denied.kind, DeniedKind::InvalidSignature, "{denied:?}");
}

#[test]
fn tampered_token_bytes_are_refused() {
    let s = Server::new();
    let now = Utc::now();
    let mut claims = s.claims("contacts.people:read", now);
    claims.app = AppId::new("tamper-app");
    let token = mint(&s.root, &claims).unwrap();
    let r = req(&claims, "contacts.people", Action::Read);
    s.authz.authorize(&token, &r).unwrap();

    let bytes = URL_SAFE.decode(&token).unwrap();
    // Change the app id inside the signed block: the structure stays valid,
    // the signature does not.
    let at = bytes.windows(10).position(|w| w == b"tamper-app").unwrap();
    let mut changed = bytes.clone();
    changed[at + 9] = b'q';
    let denied = s.authz.authorize(&URL_SAFE.encode(&changed), &r).unwrap_err();
    assert_eq!(denied.kind, DeniedKind::InvalidSignature, "{denied:?}");

    // Any single flipped byte is refused.
    for i in 0..bytes.len() {
        let mut flipped = bytes.clone();
        flipped[i] ^= 0x01;
        let result = s.authz.authorize(&URL_SAFE.encode(&flipped), &r);
        let denied = result.expect_err(&format!("flipped byte {i} accepted"));
        assert!(
            matches!(denied.kind, DeniedKind::InvalidSignature | DeniedKind::Malformed),
            "byte {i}: {denied:?}"
        );
    }
    // Truncated and garbage tokens.
    for bad in [&token[..token.len() / 2], "", "not a token", "AAAA"] {
        let denied = s.authz.authorize(bad, &r).unwrap_err();
        assert!(matches!(
            denied.kind,
            DeniedKind::InvalidSignature | DeniedKind::Malformed
        ));
    }
    let huge = "A".repeat(20_000);
    assert_eq!(s.authz.authorize(&huge, &r).unwrap_err().kind, DeniedKind::Malformed);
}

#[test]
fn a_token_for_vault_a_is_refused_on_vault_b() {
    let s = Server::new();
    let (token, claims) = s.token("contacts.people:read", Utc::now());
    let mut r = req(&claims, "contacts.people", Action::Read);
    r.vault = VaultId::generate();
    assert_eq!(s.authz.authorize(&token, &r).unwrap_err().kind, DeniedKind::WrongVault);
}

#[test]
fn attenuation_to_read_only_is_honoured() {
    let s = Server::new();
    let (token, claims) = s.token("contacts.people:read+write", Utc::now());
    s.authz
        .authorize(&token, &req(&claims, "contacts.people", Action::Update))
        .unwrap();
    let ro = attenuate(&token, &Attenuation::new().read_only()).unwrap();
    s.authz
        .authorize(&ro, &req(&claims, "contacts.people", Action::Read))
        .unwrap();
    for action in Action::WRITE {
        let denied = s
            .authz
            .authorize(&ro, &req(&claims, "contacts.people", action))
            .unwrap_err();
        assert_eq!(
            denied.kind,
            DeniedKind::MissingRight {
                required: format!("contacts.people:{action}")
            }
        );
    }
    let v = s.authz.verify(&ro).unwrap();
    assert_eq!(v.grant().to_scope_string(), "contacts.people:read");
    assert_eq!(v.authority_grant().to_scope_string(), "contacts.people:read+write");
    assert_eq!(v.block_count(), 2);
}

#[test]
fn attenuation_to_tables_columns_and_expiry_is_honoured() {
    let s = Server::new();
    let now = Utc::now();
    let (token, claims) = s.token("contacts.people:read+update notes.*:read tasks.items:read+write", now);
    let narrowed = attenuate(
        &token,
        &Attenuation::new()
            .tables([t("contacts.people"), t("tasks.items")])
            .columns(t("contacts.people"), ["name", "email"])
            .table_actions(t("tasks.items"), [Action::Read, Action::Create])
            .expires_at(now + TimeDelta::minutes(2)),
    )
    .unwrap();
    let v = s.authz.verify(&narrowed).unwrap();
    assert_eq!(
        v.grant().to_scope_string(),
        "contacts.people(email,name):read+update tasks.items:read+create"
    );
    assert_eq!(
        v.expires_at(),
        claims.issued_at.with_nanosecond_zero() + TimeDelta::minutes(2)
    );

    let at = |secs| now + TimeDelta::seconds(secs);
    let r = |table: &str, action| Request::new(claims.vault, t(table), action, at(10));
    s.authz
        .check(&v, &r("contacts.people", Action::Read).with_columns(["name"]))
        .unwrap();
    assert_eq!(
        s.authz
            .check(&v, &r("contacts.people", Action::Read).with_columns(["phone"]))
            .unwrap_err()
            .kind,
        DeniedKind::ColumnNotGranted {
            table: "contacts.people".into(),
            column: "phone".into()
        }
    );
    assert_eq!(
        s.authz.check(&v, &r("notes.notes", Action::Read)).unwrap_err().kind,
        DeniedKind::MissingRight {
            required: "notes.notes:read".into()
        }
    );
    assert_eq!(
        s.authz.check(&v, &r("tasks.items", Action::Delete)).unwrap_err().kind,
        DeniedKind::MissingRight {
            required: "tasks.items:delete".into()
        }
    );
    s.authz.check(&v, &r("tasks.items", Action::Create)).unwrap();
    // The shorter expiry applies; the original token still lives longer.
    let late = Request::new(claims.vault, t("tasks.items"), Action::Read, at(150));
    assert_eq!(s.authz.check(&v, &late).unwrap_err().kind, DeniedKind::Expired);
    s.authz.authorize(&token, &late).unwrap();
}

#[test]
fn attenuations_stack_and_never_widen() {
    let s = Server::new();
    let (token, claims) = s.token("contacts.people(name):read tasks.items:read", Utc::now());
    // Asking an attenuation for more columns, actions or time than the token has.
    let wider = attenuate(
        &token,
        &Attenuation::new()
            .columns(t("contacts.people"), ["name", "phone"])
            .actions(Action::ALL)
            .expires_at(claims.expires_at + TimeDelta::hours(1)),
    )
    .unwrap();
    let v = s.authz.verify(&wider).unwrap();
    assert_eq!(v.grant(), v.authority_grant());
    assert_eq!(v.expires_at(), claims.expires_at.with_nanosecond_zero());
    let phone = req(&claims, "contacts.people", Action::Read).with_columns(["phone"]);
    assert!(s.authz.check(&v, &phone).is_err());
    assert!(
        s.authz
            .check(&v, &req(&claims, "contacts.people", Action::Update))
            .is_err()
    );
    // A second attenuation narrows the first.
    let ro_people = attenuate(&wider, &Attenuation::new().tables([t("contacts.people")])).unwrap();
    let v = s.authz.verify(&ro_people).unwrap();
    assert_eq!(v.grant().to_scope_string(), "contacts.people(name):read");
    assert!(s.authz.check(&v, &req(&claims, "tasks.items", Action::Read)).is_err());
    assert!(attenuate(&token, &Attenuation::new()).is_err());
}

#[test]
fn widening_by_adding_facts_in_a_block_is_refused() {
    let s = Server::new();
    let (token, claims) = s.token("contacts.people(name):read", Utc::now());
    let b = UnverifiedBiscuit::from_base64(&token).unwrap();
    let forged = b
        .append(block!(
            r#"
            right("contacts.people", "update");
            all_columns("contacts.people", "update");
            rows("contacts.people", "update", "all");
            all_columns("contacts.people", "read");
            right("notes.notes", "read");
            all_columns("notes.notes", "read");
            rows("notes.notes", "read", "all");
            time(2000-01-01T00:00:00Z);
            "#
        ))
        .unwrap()
        .to_base64()
        .unwrap();
    let denied = s
        .authz
        .authorize(&forged, &req(&claims, "contacts.people", Action::Update))
        .unwrap_err();
    assert_eq!(
        denied.kind,
        DeniedKind::MissingRight {
            required: "contacts.people:update".into()
        }
    );
    let denied = s
        .authz
        .authorize(&forged, &req(&claims, "notes.notes", Action::Read))
        .unwrap_err();
    assert_eq!(
        denied.kind,
        DeniedKind::MissingRight {
            required: "notes.notes:read".into()
        }
    );
    let phone = req(&claims, "contacts.people", Action::Read).with_columns(["phone"]);
    assert!(matches!(
        s.authz.authorize(&forged, &phone).unwrap_err().kind,
        DeniedKind::ColumnNotGranted { .. }
    ));
    // A fake `time` fact does not extend the token.
    let mut late = req(&claims, "contacts.people", Action::Read);
    late.now = claims.expires_at + TimeDelta::seconds(1);
    assert_eq!(s.authz.authorize(&forged, &late).unwrap_err().kind, DeniedKind::Expired);
    // What it did have still works.
    s.authz
        .authorize(&forged, &req(&claims, "contacts.people", Action::Read))
        .unwrap();
}

#[test]
fn foreign_checks_in_a_block_are_enforced() {
    let s = Server::new();
    let (token, claims) = s.token("contacts.people:read+write", Utc::now());
    let b = UnverifiedBiscuit::from_base64(&token).unwrap();
    let restricted = b
        .append(block!(r#"check if operation("read") or operation("create");"#))
        .unwrap()
        .to_base64()
        .unwrap();
    s.authz
        .authorize(&restricted, &req(&claims, "contacts.people", Action::Create))
        .unwrap();
    let denied = s
        .authz
        .authorize(&restricted, &req(&claims, "contacts.people", Action::Delete))
        .unwrap_err();
    assert!(matches!(denied.kind, DeniedKind::Restricted { .. }), "{denied:?}");
}

#[test]
fn a_revoked_grant_is_refused_on_the_very_next_check() {
    let s = Server::new();
    let (token, claims) = s.token("contacts.people:read", Utc::now());
    let r = req(&claims, "contacts.people", Action::Read);
    let v = s.authz.verify(&token).unwrap();
    s.authz.check(&v, &r).unwrap();
    s.view.set_grant(claims.grant_id, 1, GrantStatus::Revoked);
    assert_eq!(s.authz.check(&v, &r).unwrap_err().kind, DeniedKind::Revoked);
    assert_eq!(s.authz.authorize(&token, &r).unwrap_err().kind, DeniedKind::Revoked);
}

#[test]
fn a_revocation_from_another_thread_is_seen_next() {
    let s = Server::new();
    let (token, claims) = s.token("contacts.people:read", Utc::now());
    let r = req(&claims, "contacts.people", Action::Read);
    let v = Arc::new(s.authz.verify(&token).unwrap());
    s.authz.check(&v, &r).unwrap();
    let view = s.view.clone();
    let grant_id = claims.grant_id;
    std::thread::spawn(move || view.set_grant(grant_id, 1, GrantStatus::Revoked))
        .join()
        .unwrap();
    assert_eq!(s.authz.check(&v, &r).unwrap_err().kind, DeniedKind::Revoked);
}

#[test]
fn a_grant_version_bump_refuses_old_tokens() {
    let s = Server::new();
    let now = Utc::now();
    let (old_token, mut claims) = s.token("contacts.people:read+write", now);
    // The user narrows the grant: version 2.
    claims.grant = claims.grant.intersect(&grant("contacts.people:read"));
    claims.grant_version = 2;
    s.view.set_grant(claims.grant_id, 2, GrantStatus::Active);
    let r = req(&claims, "contacts.people", Action::Read);
    let denied = s.authz.authorize(&old_token, &r).unwrap_err();
    assert_eq!(denied.kind, DeniedKind::GrantChanged { current_version: 2 });
    let new_token = mint(&s.root, &claims).unwrap();
    s.authz.authorize(&new_token, &r).unwrap();
    assert!(
        s.authz
            .authorize(&new_token, &req(&claims, "contacts.people", Action::Update))
            .is_err()
    );
}

#[test]
fn revoked_token_ids_revoke_the_token_and_its_attenuations() {
    let s = Server::new();
    let (token, claims) = s.token("contacts.people:read", Utc::now());
    let other = mint(&s.root, &claims).unwrap();
    let child = attenuate(&token, &Attenuation::new().read_only()).unwrap();
    let r = req(&claims, "contacts.people", Action::Read);
    let v = s.authz.verify(&token).unwrap();
    let family = v.revocation_ids()[0].clone();
    s.view.revoke_token_ids([family], claims.expires_at);
    assert_eq!(s.authz.check(&v, &r).unwrap_err().kind, DeniedKind::Revoked);
    assert_eq!(s.authz.authorize(&child, &r).unwrap_err().kind, DeniedKind::Revoked);
    // Another token of the same grant is not affected.
    s.authz.authorize(&other, &r).unwrap();
}

#[test]
fn an_unknown_grant_is_refused() {
    let s = Server::new();
    let (token, claims) = s.token("contacts.people:read", Utc::now());
    s.view.remove_grant(claims.grant_id);
    let r = req(&claims, "contacts.people", Action::Read);
    assert_eq!(
        s.authz.authorize(&token, &r).unwrap_err().kind,
        DeniedKind::UnknownGrant
    );
}

#[test]
fn a_cached_verified_token_still_sees_revocation_and_expiry() {
    let s = Server::new();
    let now = Utc::now();
    let (token, claims) = s.token("contacts.people:read", now);
    let cached: VerifiedToken = s.authz.verify(&token).unwrap();
    let mut r = req(&claims, "contacts.people", Action::Read);
    for _ in 0..3 {
        s.authz.check(&cached, &r).unwrap();
    }
    // Expiry: same cached token, later clock.
    r.now = claims.expires_at + TimeDelta::seconds(1);
    assert_eq!(s.authz.check(&cached, &r).unwrap_err().kind, DeniedKind::Expired);
    // Revocation: same cached token, clock back in range.
    r.now = now + TimeDelta::seconds(5);
    s.authz.check(&cached, &r).unwrap();
    s.view.set_grant(claims.grant_id, 1, GrantStatus::Revoked);
    assert_eq!(s.authz.check(&cached, &r).unwrap_err().kind, DeniedKind::Revoked);
    // Version bump with the grant active again.
    s.view.set_grant(claims.grant_id, 2, GrantStatus::Active);
    assert_eq!(
        s.authz.check(&cached, &r).unwrap_err().kind,
        DeniedKind::GrantChanged { current_version: 2 }
    );
}

#[test]
fn verified_tokens_and_authorizers_can_be_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<VerifiedToken>();
    assert_send_sync::<Authorizer>();
    assert_send_sync::<RevocationView>();
}

#[test]
fn verified_token_reports_its_claims_without_printing_the_token() {
    let s = Server::new();
    let (token, claims) = s.token("contacts.people:read", Utc::now());
    let v = s.authz.verify(&token).unwrap();
    assert_eq!(v.vault(), claims.vault);
    assert_eq!(v.app(), &claims.app);
    assert_eq!(v.grant_id(), claims.grant_id);
    assert_eq!(v.grant_version(), 1);
    assert_eq!(v.issued_at(), claims.issued_at.with_nanosecond_zero());
    assert_eq!(v.grant(), &claims.grant);
    assert_eq!(v.revocation_ids().len(), 1);
    let dbg = format!("{v:?}");
    assert!(!dbg.contains(&token[..40]), "{dbg}");
}

trait WholeSeconds {
    fn with_nanosecond_zero(self) -> Self;
}

impl WholeSeconds for chrono::DateTime<Utc> {
    fn with_nanosecond_zero(self) -> Self {
        chrono::DateTime::from_timestamp(self.timestamp(), 0).unwrap()
    }
}
