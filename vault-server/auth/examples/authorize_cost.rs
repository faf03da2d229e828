//! Rough cost of the authorizer's steps (no assertions; numbers only).
//!
//! `cargo run --release -p coffer-auth --example authorize_cost`

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use chrono::{TimeDelta, Utc};
use coffer_auth::{
    Action, Attenuation, Authorizer, ColumnSet, GrantSpec, GrantStatus, Request, RevocationView, RootKeyPair,
    TablePermission, TokenClaims, attenuate, mint,
};
use coffer_core::{AppId, GrantId, VaultId};

fn per_op(label: &str, n: u32, mut f: impl FnMut()) {
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    let each = start.elapsed() / n;
    println!("{label:<42} {each:>10.1?}");
}

fn main() {
    let root = RootKeyPair::generate();
    let view = Arc::new(RevocationView::new());
    let authz = Authorizer::new(root.public_key(), view.clone());
    let table = "contacts.people".parse().expect("table");
    let mut grant = GrantSpec::new();
    grant
        .insert(
            TablePermission::new(table, [Action::Read, Action::Update])
                .with_columns(ColumnSet::only(["name", "email", "phone"])),
        )
        .expect("grant");
    for name in ["notes.notes", "notes.folders", "tasks.items"] {
        grant
            .insert(TablePermission::new(name.parse().expect("table"), Action::ALL))
            .expect("grant");
    }
    let now = Utc::now();
    let claims = TokenClaims::new(
        VaultId::generate(),
        AppId::new("bench"),
        GrantId::generate(),
        1,
        grant,
        now,
        TimeDelta::minutes(15),
    );
    view.set_grant(claims.grant_id, 1, GrantStatus::Active);
    let token = mint(&root, &claims).expect("mint");
    let attenuated = attenuate(
        &token,
        &Attenuation::new()
            .read_only()
            .columns("contacts.people".parse().expect("table"), ["name"]),
    )
    .expect("attenuate");
    let request = Request::new(
        claims.vault,
        "contacts.people".parse().expect("table"),
        Action::Read,
        now,
    )
    .with_columns(["id", "name"]);
    println!("token: {} bytes, attenuated: {} bytes", token.len(), attenuated.len());

    let n = 2000;
    per_op("mint", n, || {
        black_box(mint(&root, &claims).expect("mint"));
    });
    per_op("verify (signature + facts)", n, || {
        black_box(authz.verify(&token).expect("verify"));
    });
    per_op("authorize (verify + check)", n, || {
        black_box(authz.authorize(&token, &request).expect("authorize"));
    });
    let cached = authz.verify(&token).expect("verify");
    per_op("check, cached VerifiedToken", n, || {
        black_box(authz.check(&cached, &request).expect("check"));
    });
    let cached = authz.verify(&attenuated).expect("verify");
    per_op("check, cached, 1 attenuation block", n, || {
        black_box(authz.check(&cached, &request).expect("check"));
    });
    per_op("revocation view lookup only", n * 50, || {
        black_box(view.check(claims.grant_id, 1, cached.revocation_ids()).is_ok());
    });
}
