//! The change feed: two apps with different grants on one vault see exactly
//! the changes within their grants, in order, once each across pages; an app
//! without the table sees nothing; cursors are bound to the vault and app;
//! a cursor older than the log kept must resync.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use coffer_core::TableName;
use coffer_gateway::changes::{self, ChangeOp, ChangePage, ChangesQuery};
use coffer_gateway::{Caller, GatewayError, rows};
use coffer_storage::EngineOptions;
use coffer_storage::changes::{LogRead, read_log};
use common::*;
use serde_json::{Value, json};

fn feed_query(pairs: &[(&str, &str)]) -> ChangesQuery {
    let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
    ChangesQuery::parse(&pairs).unwrap()
}

async fn page(caller: &Caller, since: Option<&str>, limit: usize) -> ChangePage {
    let limit = limit.to_string();
    let mut pairs = vec![("limit", limit.as_str())];
    if let Some(s) = since {
        pairs.push(("since", s));
    }
    changes::changes(caller, &feed_query(&pairs)).await.unwrap()
}

/// Every change from `since` until the feed says nothing more waits, paging
/// with `limit`; with the cursor to resume from.
async fn drain(caller: &Caller, since: Option<String>, limit: usize) -> (Vec<changes::Change>, String) {
    let mut since = since;
    let mut out = Vec::new();
    for _ in 0..10_000 {
        let p = page(caller, since.as_deref(), limit).await;
        assert!(p.changes.len() <= limit, "a page holds at most `limit` changes");
        out.extend(p.changes);
        since = Some(p.cursor);
        if !p.more {
            return (out, since.unwrap());
        }
    }
    panic!("the feed never ended");
}

/// The cursor of a feed that has delivered everything so far.
async fn cursor_now(caller: &Caller) -> String {
    drain(caller, None, 1000).await.1
}

fn ops(changes: &[changes::Change]) -> Vec<(ChangeOp, String)> {
    changes.iter().map(|c| (c.op, c.id.clone())).collect()
}

async fn insert(caller: &Caller, id: &str, name: &str, email: &str) -> i64 {
    let row = rows::insert(
        caller,
        &people(),
        vec![values(json!({"id": id, "display_name": name, "email": email}))],
    )
    .await
    .unwrap();
    row[0]["_seq"].as_i64().unwrap()
}

async fn rename(caller: &Caller, id: &str, name: &str) -> i64 {
    let row = rows::update(caller, &people(), id, values(json!({ "display_name": name })), None)
        .await
        .unwrap();
    row["_seq"].as_i64().unwrap()
}

#[tokio::test]
async fn each_app_sees_exactly_the_changes_within_its_grant() {
    let w = World::new().await;
    let a = w.caller("app-a", "contacts.people:read+create+update+delete").await;
    let b = w
        .caller("app-b", "contacts.people:create contacts.people(display_name):read:own")
        .await;
    let r = w.caller("app-r", "contacts.people(display_name):read").await;
    let c = w.caller("app-c", "notes.notes:read").await;
    let (b0, r0, c0) = (cursor_now(&b).await, cursor_now(&r).await, cursor_now(&c).await);

    let s1 = insert(&a, "a1", "Ada", "ada@example.org").await;
    let s2 = insert(&b, "b1", "Bea", "bea@example.org").await;
    let s3 = rename(&a, "a1", "Ada L").await;
    let s4 = rename(&a, "b1", "Bea B").await;
    let s5 = insert(&a, "a2", "Al", "al@example.org").await;
    rows::delete(&a, &people(), "a2", None).await.unwrap();
    rows::delete(&a, &people(), "b1", None).await.unwrap();
    // The id comes back, created by A: outside B's rows from then on.
    let s8 = insert(&a, "b1", "Not Bea", "other@example.org").await;
    let s9 = rename(&a, "b1", "Still not Bea").await;

    let (seen, _) = drain(&b, Some(b0), 2).await;
    assert_eq!(
        ops(&seen),
        vec![
            (ChangeOp::Insert, "b1".into()),
            (ChangeOp::Update, "b1".into()),
            (ChangeOp::Delete, "b1".into()),
        ]
    );
    assert_eq!(seen[0].seq, s2);
    assert_eq!(seen[1].seq, s4);
    assert_eq!(seen[1].row.as_ref().unwrap()["display_name"], "Bea B");
    assert!(seen[2].row.is_none());

    let (seen, _) = drain(&r, Some(r0), 3).await;
    use ChangeOp::*;
    assert_eq!(
        ops(&seen),
        vec![
            (Insert, "a1".into()),
            (Insert, "b1".into()),
            (Update, "a1".into()),
            (Update, "b1".into()),
            (Insert, "a2".into()),
            (Delete, "a2".into()),
            (Delete, "b1".into()),
            (Insert, "b1".into()),
            (Update, "b1".into()),
        ]
    );
    let seqs: Vec<i64> = seen.iter().map(|c| c.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "oldest first: {seqs:?}");
    assert_eq!(
        (seqs[0], seqs[2], seqs[3], seqs[4], seqs[7], seqs[8]),
        (s1, s3, s4, s5, s8, s9)
    );
    for change in &seen {
        assert_eq!(change.table, "contacts.people");
        if let Some(row) = &change.row {
            let mut columns: Vec<&str> = row.keys().map(String::as_str).collect();
            columns.sort();
            assert_eq!(
                columns,
                [
                    "_created_at",
                    "_created_by",
                    "_seq",
                    "_updated_at",
                    "_updated_by",
                    "display_name",
                    "id"
                ]
            );
            assert_eq!(row["_seq"], json!(change.seq));
        }
    }
    let text = format!("{seen:?}");
    assert!(!text.contains("@example.org"), "no ungranted column leaks: {text}");

    // B's load holds only B's live rows: not A's, not the id A took over.
    insert(&b, "b2", "Bo", "bo@example.org").await;
    let (loaded, _) = drain(&b, None, 1).await;
    assert_eq!(ops(&loaded), vec![(ChangeOp::Insert, "b2".into())]);
    assert_eq!(
        loaded[0]
            .row
            .as_ref()
            .unwrap()
            .keys()
            .filter(|k| !k.starts_with('_'))
            .collect::<Vec<_>>(),
        ["display_name", "id"]
    );

    let (seen, _) = drain(&c, Some(c0), 5).await;
    assert!(seen.is_empty(), "C reads no contacts: {seen:?}");
    let (seen, _) = drain(&c, None, 5).await;
    assert!(seen.is_empty(), "nor in a load: {seen:?}");
}

#[tokio::test]
async fn an_ungranted_table_is_the_same_answer_as_a_missing_one() {
    let w = World::new().await;
    let a = w.caller("app-a", "contacts.people:read+create").await;
    insert(&a, "a1", "Ada", "ada@example.org").await;
    let c = w.caller("app-c", "notes.notes:read").await;
    let ask = |tables: &'static str| {
        let c = c.clone();
        async move {
            changes::changes(&c, &feed_query(&[("tables", tables)]))
                .await
                .unwrap_err()
        }
    };
    let ungranted = ask("contacts.people").await;
    let missing = ask("contacts.nothing").await;
    let unknown_schema = ask("nothing.people").await;
    for e in [&ungranted, &missing, &unknown_schema] {
        assert_eq!(e.code(), "table-not-found", "{}", told(e));
    }
    // Each answer names only what was asked, in the same words.
    assert_eq!(
        ungranted.to_string().replace("contacts.people", "T"),
        missing.to_string().replace("contacts.nothing", "T")
    );
    // A granted table named in `tables` answers its changes only.
    let notes = TableName::new("notes", "notes");
    let n = w.caller("app-n", "notes.notes:read+create contacts.people:read").await;
    rows::insert(&n, &notes, vec![values(json!({"id": "n1", "title": "T", "body": "B"}))])
        .await
        .unwrap();
    let p = changes::changes(&n, &feed_query(&[("tables", "notes.notes")]))
        .await
        .unwrap();
    assert_eq!(ops(&p.changes), vec![(ChangeOp::Insert, "n1".into())]);
    assert_eq!(p.changes[0].table, "notes.notes");
    let p = changes::changes(&n, &feed_query(&[])).await.unwrap();
    let mut tables: Vec<&str> = p.changes.iter().map(|c| c.table.as_str()).collect();
    tables.sort();
    assert_eq!(tables, ["contacts.people", "notes.notes"]);
}

/// Applies a feed to a local copy, as a client would: inserts and updates
/// are upserts, deletes remove.
fn apply(copy: &mut BTreeMap<String, Value>, changes: &[changes::Change]) {
    for c in changes {
        match c.op {
            ChangeOp::Delete => {
                copy.remove(&c.id);
            }
            _ => {
                copy.insert(c.id.clone(), Value::Object(c.row.clone().unwrap()));
            }
        }
    }
}

#[tokio::test]
async fn paging_a_load_while_rows_change_misses_nothing_and_repeats_nothing() {
    let w = World::new().await;
    let a = w.caller("app-a", "contacts.people:read+create+update+delete").await;
    let r = w.caller("app-r", "contacts.people(display_name):read").await;
    for i in 0..30 {
        insert(&a, &format!("p{i:02}"), &format!("P{i}"), "x@example.org").await;
    }
    // A flushed file, an unflushed tail: the load reads both.
    w.engine.flush_table(w.vault, &people()).await.unwrap();
    for i in 30..40 {
        insert(&a, &format!("p{i:02}"), &format!("P{i}"), "x@example.org").await;
    }

    let mut copy = BTreeMap::new();
    let mut delivered: HashSet<(String, i64)> = HashSet::new();
    let mut since = None;
    let mut pages = 0;
    loop {
        let p = page(&r, since.as_deref(), 4).await;
        assert!(p.changes.len() <= 4);
        for ch in &p.changes {
            assert!(delivered.insert((ch.id.clone(), ch.seq)), "delivered twice: {ch:?}");
        }
        apply(&mut copy, &p.changes);
        since = Some(p.cursor);
        pages += 1;
        // Between pages: change rows already delivered and not yet.
        if pages == 2 {
            rename(&a, "p00", "first renamed").await;
            rename(&a, "p35", "late renamed").await;
            rows::delete(&a, &people(), "p01", None).await.unwrap();
            rows::delete(&a, &people(), "p36", None).await.unwrap();
            insert(&a, "q1", "new", "x@example.org").await;
        }
        if !p.more {
            break;
        }
        assert!(pages < 100);
    }
    assert!(pages > 10, "the load was paged ({pages} pages)");
    let now: BTreeMap<String, Value> = all_rows(&r, &people())
        .await
        .into_iter()
        .map(|row| (row["id"].as_str().unwrap().to_owned(), Value::Object(row)))
        .collect();
    assert_eq!(copy, now, "the copy is the table as the token reads it");

    // Resuming later with the last cursor brings only what changed since.
    let cursor = since.unwrap();
    let s = rename(&a, "p02", "after").await;
    let p = page(&r, Some(&cursor), 100).await;
    assert_eq!(ops(&p.changes), vec![(ChangeOp::Update, "p02".into())]);
    assert_eq!(p.changes[0].seq, s);
    // The same cursor again answers the same (a retry after a lost answer).
    let again = page(&r, Some(&cursor), 100).await;
    assert_eq!(ops(&again.changes), ops(&p.changes));
}

#[tokio::test]
async fn a_cursor_is_bound_to_its_vault_app_and_tables() {
    let w = World::new().await;
    let b = w.caller("app-b", "contacts.people:read+create").await;
    insert(&b, "b1", "Bea", "bea@example.org").await;
    let cursor = page(&b, None, 10).await.cursor;
    let bad = |e: GatewayError| {
        assert_eq!(e.code(), "invalid-filter", "{}", told(&e));
        let GatewayError::InvalidFilter { parameter, .. } = &e else {
            unreachable!()
        };
        assert_eq!(parameter, "since");
        let text = told(&e);
        assert!(!text.contains(&w.vault.to_string()), "{text}");
        assert!(!text.contains("app-"), "{text}");
        e
    };

    // The same app on another vault of the same server.
    let other = w.engine.create_vault().await.unwrap();
    w.engine.install_schema(other, "contacts", None).await.unwrap();
    let elsewhere = w.caller_in(other, "app-b", "contacts.people:read+create").await;
    insert(&elsewhere, "x1", "X", "x@example.org").await;
    let theirs = page(&elsewhere, None, 10).await.cursor;
    bad(changes::changes(&b, &feed_query(&[("since", &theirs)]))
        .await
        .unwrap_err());
    bad(changes::changes(&elsewhere, &feed_query(&[("since", &cursor)]))
        .await
        .unwrap_err());

    // Another app on the same vault, with the same grant.
    let twin = w.caller("app-twin", "contacts.people:read+create").await;
    bad(changes::changes(&twin, &feed_query(&[("since", &cursor)]))
        .await
        .unwrap_err());

    // Other tables than the cursor was given for.
    bad(
        changes::changes(&b, &feed_query(&[("since", &cursor), ("tables", "contacts.people")]))
            .await
            .unwrap_err(),
    );

    // Altered, truncated, made up.
    let (body, tag) = cursor.split_once('.').unwrap();
    let mut flipped = body.as_bytes().to_vec();
    flipped[3] = if flipped[3] == b'A' { b'B' } else { b'A' };
    let altered = format!("{}.{tag}", String::from_utf8(flipped).unwrap());
    for forged in [
        altered.as_str(),
        body,
        "",
        ".",
        "eyJwaGFzZSI6ImxvZyIsImFmdGVyIjowfQ.AAAAAAAAAAAAAAAAAAAAAA",
        &"a".repeat(5000),
    ] {
        bad(changes::changes(&b, &feed_query(&[("since", forged)]))
            .await
            .unwrap_err());
    }
    // The real one still works.
    changes::changes(&b, &feed_query(&[("since", &cursor)])).await.unwrap();
}

#[tokio::test]
async fn limit_and_parameters_are_bounded() {
    let w = World::new().await;
    let a = w.caller("app-a", "contacts.people:read+create").await;
    for i in 0..5 {
        insert(&a, &format!("p{i}"), "P", "x@example.org").await;
    }
    for limit in ["0", "1001", "-1", "x", "99999999999999999999"] {
        let pairs = vec![("limit".to_owned(), limit.to_owned())];
        let e = ChangesQuery::parse(&pairs).unwrap_err();
        assert!(
            matches!(&e, GatewayError::InvalidFilter { parameter, .. } if parameter == "limit"),
            "{e:?}"
        );
    }
    for pairs in [
        vec![("cursor", "x")],
        vec![("limit", "1"), ("limit", "2")],
        vec![("since", "a"), ("since", "b")],
    ] {
        let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        let e = ChangesQuery::parse(&pairs).unwrap_err();
        assert_eq!(e.code(), "invalid-filter", "{e:?}");
    }
    let many = vec!["contacts.people"; 65].join(",");
    assert!(ChangesQuery::parse(&[("tables".into(), many)]).is_err());
    assert_eq!(feed_query(&[]).limit, changes::DEFAULT_LIMIT);

    let p = page(&a, None, 1).await;
    assert_eq!(p.changes.len(), 1);
    assert!(p.more);
    let (all, _) = drain(&a, None, 2).await;
    assert_eq!(all.len(), 5);
    let p = page(&a, None, 1000).await;
    assert_eq!(p.changes.len(), 5);
}

#[tokio::test]
async fn a_cursor_older_than_the_kept_log_must_resync() {
    // The log keeps no flushed entry: every flush trims what it wrote.
    let (_dir, engine) = coffer_test_support::engine::throwaway_with(EngineOptions {
        background: false,
        log_retention: Duration::ZERO,
        ..EngineOptions::default()
    })
    .await;
    let vault = coffer_test_support::engine::vault_with(&engine, &["contacts"]).await;
    let app = coffer_core::AppId::new("app-a");
    for i in 0..3 {
        engine
            .insert(
                vault,
                &app,
                &people(),
                values(json!({"id": format!("p{i}"), "display_name": "P"})),
            )
            .await
            .unwrap();
    }
    let tables = [people()];
    let LogRead::Page { changes, through } = read_log(&engine, vault, &tables, 0, 3, 10).await.unwrap() else {
        panic!("nothing was trimmed yet");
    };
    assert_eq!(changes.iter().map(|c| c.version.seq.0).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(through, 3);
    tokio::time::sleep(Duration::from_millis(5)).await;
    engine.flush_table(vault, &people()).await.unwrap();
    for after in [0, 1, 2] {
        assert!(matches!(
            read_log(&engine, vault, &tables, after, 3, 10).await.unwrap(),
            LogRead::Trimmed
        ));
    }
    assert!(matches!(
        read_log(&engine, vault, &tables, 3, 3, 10).await.unwrap(),
        LogRead::Page { .. }
    ));
    // Another table's trim does not concern this one.
    let groups = TableName::new("contacts", "groups");
    assert!(matches!(
        read_log(&engine, vault, &[groups], 0, 3, 10).await.unwrap(),
        LogRead::Page { .. }
    ));
}

#[tokio::test]
async fn the_gateway_answers_resync_required_past_the_trimmed_log() {
    let w = World::new().await;
    let a = w.caller("app-a", "contacts.people:read+create+update").await;
    insert(&a, "a1", "Ada", "ada@example.org").await;
    insert(&a, "a2", "Al", "al@example.org").await;
    let (_, cursor) = drain(&a, None, 10).await;
    // Half-way through a load.
    let loading = page(&a, None, 1).await.cursor;
    let s = rename(&a, "a1", "Ada L").await;
    // As a trim past the cursor leaves the log.
    sqlx::query("INSERT INTO commit_log_trimmed (vault_id, table_name, upto) VALUES (?, 'contacts.people', ?)")
        .bind(w.vault.to_string())
        .bind(s)
        .execute(w.engine.control().pool())
        .await
        .unwrap();
    for since in [&cursor, &loading] {
        let e = changes::changes(&a, &feed_query(&[("since", since)]))
            .await
            .unwrap_err();
        assert_eq!(e.code(), "resync-required", "{}", told(&e));
        assert!(matches!(e, GatewayError::ResyncRequired));
    }
    // Loading again works, and the row is there as it is now.
    let (seen, _) = drain(&a, None, 10).await;
    assert_eq!(
        ops(&seen),
        vec![(ChangeOp::Insert, "a2".into()), (ChangeOp::Insert, "a1".into())]
    );
    assert_eq!(seen[1].row.as_ref().unwrap()["display_name"], "Ada L");
}

#[tokio::test]
async fn the_access_log_records_each_feed_request_with_the_tables_it_followed() {
    let w = World::new().await;
    let a = w.caller("app-a", "contacts.people:read+create").await;
    insert(&a, "a1", "Ada", "ada@example.org").await;
    let token = w.token(w.vault, "app-f", "contacts.people(display_name):read notes.notes:read");
    let credentials = coffer_gateway::Credentials::bearer(token);
    let query = feed_query(&[]);
    let served = w
        .gateway
        .run(&credentials, coffer_gateway::Operation::Read, Vec::new(), |caller| {
            let query = query.clone();
            async move { changes::changes(&caller, &query).await }
        })
        .await;
    assert_eq!(served.result.unwrap().changes.len(), 1);
    let logged = w.logged("app-f").await;
    assert_eq!(
        logged,
        vec![(
            "read".to_owned(),
            vec![people(), TableName::new("notes", "notes")],
            1,
            "ok".to_owned()
        )]
    );
}

/// The purge entries of a page, as (table, drop, columns).
fn purges(page: &ChangePage) -> Vec<(String, String, Vec<String>)> {
    page.purge
        .iter()
        .map(|p| {
            let drop = serde_json::to_value(p.drop).unwrap().as_str().unwrap().to_owned();
            (p.table.clone(), drop, p.columns.clone())
        })
        .collect()
}

#[tokio::test]
async fn a_narrowed_grant_is_told_what_to_purge_then_follows_what_is_left() {
    let w = World::new().await;
    let writer = w
        .caller("writer", "contacts.people:read+create+update tasks.lists:read+create")
        .await;
    insert(&writer, "p1", "Ada", "ada@example.org").await;
    rows::insert(
        &writer,
        &TableName::new("tasks", "lists"),
        vec![values(json!({"name": "Home"}))],
    )
    .await
    .unwrap();
    let wide = w.caller("app", "contacts.people:read tasks.lists:read").await;
    let cursor = cursor_now(&wide).await;

    // The same app's new token reads two columns of people, its own rows
    // only, and no lists.
    let narrow = w.caller("app", "contacts.people(display_name,email):read:own").await;
    let first = page(&narrow, Some(&cursor), 100).await;
    let people_columns: Vec<String> = w
        .registry
        .latest("contacts")
        .unwrap()
        .tables
        .iter()
        .find(|t| t.name == "people")
        .unwrap()
        .columns
        .iter()
        .map(|c| c.name.clone())
        .filter(|c| c != "display_name" && c != "email")
        .collect();
    assert_eq!(
        purges(&first),
        vec![
            ("tasks.lists".to_owned(), "table".to_owned(), vec![]),
            ("contacts.people".to_owned(), "columns".to_owned(), people_columns),
            ("contacts.people".to_owned(), "rows".to_owned(), vec![]),
        ]
    );
    // The purge is said once: the next cursor records the narrower view.
    rename(&writer, "p1", "Ada L.").await;
    let next = page(&narrow, Some(&first.cursor), 100).await;
    assert!(next.purge.is_empty(), "{:?}", next.purge);
    assert!(
        next.changes.is_empty(),
        "another app's row is not followed under own: {:?}",
        next.changes
    );
    // Resuming from the old cursor tells it again (a client that lost the
    // page purges again, which changes nothing).
    assert_eq!(purges(&page(&narrow, Some(&cursor), 100).await), purges(&first));

    // A grant that reads more than the cursor's cannot resume: the app
    // lacks rows or columns it may now see.
    for wider in [
        "contacts.people(display_name,email,phone):read:own",
        "contacts.people(display_name,email):read",
        "contacts.people(display_name,email):read:own tasks.items:read",
    ] {
        let caller = w.caller("app", wider).await;
        let e = changes::changes(&caller, &feed_query(&[("since", &next.cursor)]))
            .await
            .unwrap_err();
        assert!(matches!(e, GatewayError::ResyncRequired), "{wider}: {e:?}");
    }
}

#[tokio::test]
async fn a_table_asked_by_name_and_no_longer_granted_is_purged_once_then_refused() {
    let w = World::new().await;
    let writer = w
        .caller("writer", "contacts.people:read+create tasks.lists:read+create")
        .await;
    insert(&writer, "p1", "Ada", "ada@example.org").await;
    let asked = [("tables", "contacts.people,tasks.lists")];
    let wide = w.caller("app", "contacts.people:read tasks.lists:read").await;
    let cursor = changes::changes(&wide, &feed_query(&asked)).await.unwrap().cursor;
    let narrow = w.caller("app", "contacts.people:read").await;
    let first = changes::changes(&narrow, &feed_query(&[asked[0], ("since", &cursor)]))
        .await
        .unwrap();
    assert_eq!(
        purges(&first),
        vec![("tasks.lists".to_owned(), "table".to_owned(), vec![])]
    );
    // Asked again after the purge, the table is refused as any table the
    // token does not name.
    let e = changes::changes(&narrow, &feed_query(&[asked[0], ("since", &first.cursor)]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "table-not-found", "{e:?}");
    // Without a cursor (a load), an unreadable table asked is refused.
    let e = changes::changes(&narrow, &feed_query(&asked)).await.unwrap_err();
    assert_eq!(e.code(), "table-not-found", "{e:?}");
}
