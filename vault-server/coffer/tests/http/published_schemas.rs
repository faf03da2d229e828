//! Schemas that apps publish (decision 0031): an app publishes a schema
//! file as itself, the registry checks it as it checks the built-in ones,
//! the name is a namespace its first publisher holds, any app may then ask
//! for the tables, the user's vault gets them with the first grant, and the
//! consent page says who defined them. Operators publish with
//! `coffer schema publish` or a `--schemas-dir`, and may turn app
//! publishing off.

use base64::Engine as _;
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{Api, Reply, Server, authorize_app, authorize_path, consent, pkce, rows_path};

/// A confidential app: `(client id, Authorization header)`.
fn publisher(server: &Server, name: &str) -> (String, String) {
    let app = server.register_app(
        name,
        &[
            "--redirect-uri",
            "https://publisher.example/cb",
            "--auth-method",
            "client-secret-basic",
        ],
    );
    let id = app["client_id"].as_str().unwrap().to_owned();
    let secret = app["client_secret"].as_str().unwrap();
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
    (id, format!("Basic {basic}"))
}

/// A recipes schema `name` version 1 (tables `recipes` and `books`), with
/// `extra` more columns on its `recipes` table.
fn recipes(name: &str, extra: &[Value]) -> Value {
    let mut columns = vec![
        json!({"name": "title", "type": "text", "nullable": false, "description": "The recipe's name."}),
        json!({"name": "minutes", "type": "integer", "nullable": true, "description": "How long it takes to cook, in minutes."}),
        json!({"name": "book_id", "type": "text", "nullable": true, "references": format!("{name}.books"), "description": "The book the recipe is from."}),
    ];
    columns.extend(extra.iter().cloned());
    json!({
        "name": name,
        "version": 1,
        "description": "Your recipes and the cookbooks they come from.",
        "tables": [
            {"name": "recipes", "description": "One recipe you keep.", "columns": columns},
            {"name": "books", "description": "A cookbook you own.", "columns": [
                {"name": "title", "type": "text", "nullable": false, "description": "The book's title."}
            ]}
        ]
    })
}

/// `POST /v1/schemas` with `auth` (the whole `Authorization` header).
async fn publish(server: &Server, auth: Option<&str>, file: &Value) -> Reply {
    Api::new(&server.base, "")
        .send(
            Method::POST,
            "/v1/schemas",
            auth,
            Some(("application/json", serde_json::to_vec(file).unwrap())),
        )
        .await
}

/// `GET path` with no `Authorization` header.
async fn get_public(server: &Server, path: &str) -> Reply {
    Api::new(&server.base, "").send(Method::GET, path, None, None).await
}

#[tokio::test]
async fn an_app_publishes_a_schema_and_another_app_shares_its_tables() {
    let server = Server::start();
    // The user signs up before the schema exists: the vault gets its
    // tables with the first grant that names them.
    let user = server.new_user("cook@example.com", 1).await;
    let (acme, acme_auth) = publisher(&server, "Acme Recipes");

    let file = recipes("acme_recipes", &[]);
    let reply = publish(&server, Some(&acme_auth), &file).await;
    reply.expect(201);
    assert_eq!(reply.body["name"], "acme_recipes");
    assert_eq!(reply.body["version"], 1);
    assert_eq!(reply.body["created"], true);
    assert_eq!(reply.body["publisher"]["client_id"], acme.as_str());
    assert_eq!(reply.body["publisher"]["name"], "Acme Recipes");
    assert_eq!(
        reply.headers.get("location").and_then(|v| v.to_str().ok()),
        Some("/v1/schemas/acme_recipes/1")
    );

    // Listed beside the built-in schemas, with who published each.
    let listing = get_public(&server, "/v1/schemas").await;
    listing.expect(200);
    let schemas = listing.body["schemas"].as_array().unwrap();
    let entry = schemas.iter().find(|s| s["name"] == "acme_recipes").expect("listed");
    assert_eq!(entry["publisher"]["kind"], "app");
    assert_eq!(entry["publisher"]["name"], "Acme Recipes");
    assert_eq!(entry["tables"], json!(["recipes", "books"]));
    let contacts = schemas.iter().find(|s| s["name"] == "contacts").unwrap();
    assert_eq!(contacts["publisher"], json!({"kind": "coffer"}));
    // The file as published, and the versions of the name.
    let served = get_public(&server, "/v1/schemas/acme_recipes/1").await;
    served.expect(200);
    assert_eq!(served.body, file);
    get_public(&server, "/v1/schemas/acme_recipes").await.expect(200);
    get_public(&server, "/v1/schemas/acme_recipes/2")
        .await
        .expect_problem(404, "schema-not-found");
    get_public(&server, "/v1/schemas/nosuch")
        .await
        .expect_problem(404, "schema-not-found");

    // Another app asks for the published tables. The consent page says who
    // defined them.
    let cookbook = server.app("Cookbook");
    let scope = "acme_recipes.recipes:read+write acme_recipes.books:read+create";
    let page = user
        .visit(&authorize_path(
            &cookbook,
            crate::common::APP_REDIRECT,
            scope,
            Some(&pkce().1),
        ))
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("defined by Acme Recipes, not by Coffer"),
        "the consent page names the publisher: {}",
        page.body
    );
    let tokens = authorize_app(&user, &cookbook, scope, None).await;
    let api = server.api(&tokens.access);
    let book = api
        .post(
            &rows_path("acme_recipes.books", &[]),
            &json!({"title": "Salt Fat Acid Heat"}),
        )
        .await;
    book.expect(201);
    let book_id = book.body["id"].as_str().unwrap().to_owned();
    api.post(
        &rows_path("acme_recipes.recipes", &[]),
        &json!({"title": "Focaccia", "minutes": 90, "book_id": book_id}),
    )
    .await
    .expect(201);
    // Typed like any other table: a bad value names the column.
    let bad = api
        .post(
            &rows_path("acme_recipes.recipes", &[]),
            &json!({"title": "x", "minutes": "soon"}),
        )
        .await;
    bad.expect_problem(422, "invalid-row");
    assert_eq!(bad.body["column"], "minutes");
    let sql = api
        .sql(
            "SELECT r.title, b.title AS book FROM acme_recipes.recipes r JOIN acme_recipes.books b ON b.id = r.book_id",
            &[],
        )
        .await;
    sql.expect(200);
    assert_eq!(sql.body["rows"], json!([["Focaccia", "Salt Fat Acid Heat"]]));
    // With a token, GET /v1/schemas still describes what the token sees.
    let seen = api.get("/v1/schemas").await;
    seen.expect(200);
    assert_eq!(seen.body["schemas"].as_array().unwrap().len(), 1, "{}", seen.text);
    assert_eq!(seen.body["schemas"][0]["name"], "acme_recipes");

    // The publisher adds a nullable column to version 1 (additive): 200.
    let grown = recipes(
        "acme_recipes",
        &[json!({"name": "servings", "type": "integer", "nullable": true, "description": "How many people it feeds."})],
    );
    let reply = publish(&server, Some(&acme_auth), &grown).await;
    reply.expect(200);
    assert_eq!(reply.body["created"], false);
    // The vault's table has the new column at once (the grant reads and
    // writes every column of the table).
    let bread = api
        .post(
            &rows_path("acme_recipes.recipes", &[]),
            &json!({"title": "Soda bread", "minutes": 45, "servings": 6}),
        )
        .await;
    bread.expect(201);
    assert_eq!(bread.body["servings"], 6);

    // Published schemas live in the control database: a restart keeps them,
    // and the rows written through them.
    let server = server.restart();
    let listing = get_public(&server, "/v1/schemas/acme_recipes/1").await;
    listing.expect(200);
    assert_eq!(listing.body, grown);
    let api = server.api(&tokens.access);
    let rows = api.all_rows("acme_recipes.recipes", &[("order", "title")]).await;
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (&rows[0]["title"], &rows[0]["servings"]),
        (&json!("Focaccia"), &Value::Null)
    );
    assert_eq!(
        (&rows[1]["title"], &rows[1]["servings"]),
        (&json!("Soda bread"), &json!(6))
    );
}

#[tokio::test]
async fn publishing_follows_the_registry_rules_and_keeps_names_to_their_publisher() {
    let server = Server::start();
    let (_, acme) = publisher(&server, "Acme");
    let (_, rival) = publisher(&server, "Rival");

    // No or wrong credentials: 401 with a Basic challenge.
    let reply = publish(&server, None, &recipes("acme_a", &[])).await;
    reply.expect_problem(401, "invalid-client");
    assert!(
        reply
            .headers
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("Basic")),
        "{:?}",
        reply.headers
    );
    let wrong = acme.replace("Basic ", "Basic x");
    publish(&server, Some(&wrong), &recipes("acme_a", &[]))
        .await
        .expect_problem(401, "invalid-client");
    publish(&server, Some("Bearer abc"), &recipes("acme_a", &[]))
        .await
        .expect_problem(401, "invalid-client");
    // A public client has no secret, so it cannot prove who it is.
    let public = server.app("Browser App");
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{public}:"));
    publish(&server, Some(&format!("Basic {basic}")), &recipes("acme_a", &[]))
        .await
        .expect_problem(403, "public-client");

    // The first publisher holds the name.
    publish(&server, Some(&acme), &recipes("acme_a", &[])).await.expect(201);
    let taken = publish(&server, Some(&rival), &recipes("acme_a", &[])).await;
    taken.expect_problem(403, "namespace-taken");
    assert_eq!(taken.body["name"], "acme_a");
    // Built-in names and reserved ones are nobody's to publish.
    publish(&server, Some(&acme), &recipes("contacts", &[]))
        .await
        .expect_problem(403, "namespace-taken");
    for reserved in ["pg_recipes", "information_schema", "public", "coffer_things"] {
        publish(&server, Some(&acme), &recipes(reserved, &[]))
            .await
            .expect_problem(422, "unpublishable");
    }

    // A file the built-in loader refuses is refused the same way, naming
    // the table and column.
    let bad_type = recipes(
        "acme_b",
        &[json!({"name": "rating", "type": "stars", "description": "How much you like it."})],
    );
    let reply = publish(&server, Some(&acme), &bad_type).await;
    reply.expect_problem(400, "invalid-schema");
    assert_eq!(
        (reply.body["table"].as_str(), reply.body["column"].as_str()),
        (Some("recipes"), Some("rating"))
    );
    assert!(
        reply.body["detail"]
            .as_str()
            .unwrap()
            .contains("unknown column type `stars`")
    );
    let dangling = recipes(
        "acme_b",
        &[json!({"name": "shelf_id", "type": "text", "references": "acme_b.shelves", "description": "Where it is."})],
    );
    let reply = publish(&server, Some(&acme), &dangling).await;
    reply.expect_problem(400, "invalid-schema");
    assert_eq!(reply.body["column"], "shelf_id");
    let foreign = recipes(
        "acme_b",
        &[json!({"name": "cook_id", "type": "text", "references": "nosuch.people", "description": "Who cooks it."})],
    );
    publish(&server, Some(&acme), &foreign)
        .await
        .expect_problem(422, "unpublishable");
    let shared = recipes(
        "acme_b",
        &[json!({"name": "cook_id", "type": "text", "references": "contacts.people", "description": "Who cooks it."})],
    );
    publish(&server, Some(&acme), &shared).await.expect(201);
    publish(&server, Some(&acme), &json!({"name": "acme_c"}))
        .await
        .expect_problem(400, "invalid-schema");
    let not_json = Api::new(&server.base, "")
        .send(
            Method::POST,
            "/v1/schemas",
            Some(&acme),
            Some(("application/json", b"{\"name\": \xff}".to_vec())),
        )
        .await;
    not_json.expect(400);

    // Within a version only additive changes: removing a column needs a
    // new version.
    let mut shrunk = recipes("acme_a", &[]);
    shrunk["tables"][0]["columns"].as_array_mut().unwrap().remove(1);
    let reply = publish(&server, Some(&acme), &shrunk).await;
    reply.expect_problem(409, "not-additive");
    assert_eq!(
        (reply.body["table"].as_str(), reply.body["column"].as_str()),
        (Some("recipes"), Some("minutes"))
    );
    // A version needs the one before it.
    let mut skipped = recipes("acme_a", &[]);
    skipped["version"] = json!(3);
    publish(&server, Some(&acme), &skipped)
        .await
        .expect_problem(422, "unpublishable");
    // Versions above 1 wait for the gateway to serve each app its version.
    let mut next = recipes("acme_a", &[]);
    next["version"] = json!(2);
    let reply = publish(&server, Some(&acme), &next).await;
    reply.expect_problem(422, "unpublishable");
    assert!(
        reply.body["detail"].as_str().unwrap().contains("not served yet"),
        "{}",
        reply.text
    );
    let mut first = recipes("acme_d", &[]);
    first["version"] = json!(2);
    publish(&server, Some(&acme), &first)
        .await
        .expect_problem(422, "unpublishable");

    // Bounds: tables per schema and description length.
    let mut wide = recipes("acme_e", &[]);
    let table = wide["tables"][1].clone();
    for i in 0..40 {
        let mut t = table.clone();
        t["name"] = json!(format!("t{i}"));
        wide["tables"].as_array_mut().unwrap().push(t);
    }
    let reply = publish(&server, Some(&acme), &wide).await;
    reply.expect_problem(422, "unpublishable");
    assert!(
        reply.body["detail"].as_str().unwrap().contains("at most 32"),
        "{}",
        reply.text
    );
    let mut wordy = recipes("acme_e", &[]);
    wordy["description"] = json!("x".repeat(5_000));
    publish(&server, Some(&acme), &wordy)
        .await
        .expect_problem(422, "unpublishable");

    // Nothing refused reached the registry.
    let listing = get_public(&server, "/v1/schemas").await;
    let names: Vec<&str> = listing.body["schemas"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["name"].as_str())
        .filter(|n| n.starts_with("acme") || n.starts_with("pg_") || *n == "public")
        .collect();
    assert_eq!(names, ["acme_a", "acme_b"]);
}

#[tokio::test]
async fn operators_publish_from_the_command_line_and_a_schemas_dir() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pantry.json"), recipes("home_pantry", &[]).to_string()).unwrap();
    let server = Server::start_with(&[
        ("COFFER_SCHEMAS_DIR", dir.path().to_str().unwrap()),
        ("COFFER_APP_SCHEMA_PUBLISHING", "false"),
    ]);
    let (acme, acme_auth) = publisher(&server, "Acme");

    // Apps may not publish on this server.
    publish(&server, Some(&acme_auth), &recipes("acme_recipes", &[]))
        .await
        .expect_problem(403, "publishing-disabled");

    // The directory's schema is offered, as the operator's.
    let listing = get_public(&server, "/v1/schemas").await;
    let pantry = listing.body["schemas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "home_pantry")
        .cloned()
        .expect("the --schemas-dir file is listed");
    assert_eq!(pantry["publisher"], json!({"kind": "operator"}));

    // `coffer schema publish` while the server runs, on behalf of an app.
    let files = tempfile::tempdir().unwrap();
    let file = files.path().join("acme.json");
    std::fs::write(&file, recipes("acme_recipes", &[]).to_string()).unwrap();
    let out = server.cli(&["schema", "publish", file.to_str().unwrap(), "--app", &acme], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "Published schema acme_recipes version 1"
    );
    // The running server sees it at once.
    let served = get_public(&server, "/v1/schemas/acme_recipes").await;
    served.expect(200);
    assert_eq!(served.body["versions"][0]["publisher"]["client_id"], acme.as_str());
    // The operator cannot take a name an app holds, nor a base schema's.
    let out = server.cli(&["schema", "publish", file.to_str().unwrap()], "");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("belongs to another publisher"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A bad file is refused naming the file, table and column.
    let broken = files.path().join("broken.json");
    let mut bad = recipes("ops_notes", &[]);
    bad["tables"][0]["columns"][0]["description"] = json!("");
    std::fs::write(&broken, bad.to_string()).unwrap();
    let out = server.cli(&["schema", "publish", broken.to_str().unwrap()], "");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("broken.json: table recipes, column title"), "{err}");

    let out = server.cli(
        &[
            "schema",
            "list",
            "--json",
            "--schemas-dir",
            dir.path().to_str().unwrap(),
        ],
        "",
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    let publisher_of = |name: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .map(|s| s["publisher"].clone())
    };
    assert_eq!(publisher_of("contacts"), Some(json!("coffer")));
    assert_eq!(publisher_of("home_pantry"), Some(json!("operator")));
    assert_eq!(publisher_of("acme_recipes"), Some(json!(format!("app {acme}"))));

    // `coffer codegen --server` generates types from the running server.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_coffer"))
        .args([
            "codegen",
            "--lang",
            "ts",
            "--server",
            &server.base,
            "--schema",
            "acme_recipes",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ts = String::from_utf8_lossy(&out.stdout);
    assert!(ts.contains("AcmeRecipesRecipes"), "{ts}");
    assert!(ts.contains("minutes"), "{ts}");
    assert!(!ts.contains("ContactsPeople"), "only the schema asked for: {ts}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_coffer"))
        .args([
            "codegen",
            "--lang",
            "rust",
            "--server",
            &server.base,
            "--schema",
            "nosuch",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown schema `nosuch`"));

    // The consent page marks the operator's schema too.
    let user = server.new_user("ops@example.com", 2).await;
    let app = server.app("Pantry App");
    let location = consent(
        &user,
        &authorize_path(
            &app,
            crate::common::APP_REDIRECT,
            "home_pantry.recipes:read",
            Some(&pkce().1),
        ),
        None,
    )
    .await;
    assert!(location.contains("code="), "{location}");
    let dashboard = user.visit("/dashboard").await;
    assert!(
        dashboard
            .body
            .contains("defined by the operator of this server, not by Coffer"),
        "{}",
        dashboard.body
    );
}

#[tokio::test]
async fn two_apps_racing_for_a_name_leave_it_to_one() {
    let server = Server::start_with(&[("COFFER_API_BODY_LIMIT", "65536")]);
    let (first, first_auth) = publisher(&server, "First");
    let (second, second_auth) = publisher(&server, "Second");
    for round in 0..5 {
        let name = format!("race_{round}");
        let file = recipes(&name, &[]);
        let (a, b) = tokio::join!(
            publish(&server, Some(&first_auth), &file),
            publish(&server, Some(&second_auth), &file)
        );
        let mut statuses = [a.status.as_u16(), b.status.as_u16()];
        statuses.sort_unstable();
        assert_eq!(statuses, [201, 403], "{} / {}", a.text, b.text);
        let winner = if a.status == 201 { &first } else { &second };
        let listed = get_public(&server, &format!("/v1/schemas/{name}")).await;
        assert_eq!(listed.body["versions"][0]["publisher"]["client_id"], winner.as_str());
    }

    // A body over the data API's limit is refused before it is read whole.
    let mut huge = recipes("race_huge", &[]);
    huge["description"] = json!("x".repeat(70_000));
    let reply = publish(&server, Some(&first_auth), &huge).await;
    reply.expect_problem(413, "body-too-large");
    assert_eq!(reply.body["limit"], 65536);
}
