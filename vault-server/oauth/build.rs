//! Rebuilds the crate when a migration changes: `sqlx::migrate!` embeds the
//! files of `migrations/sqlite/oauth` at compile time.
fn main() {
    println!("cargo:rerun-if-changed=../../migrations/sqlite/oauth");
}
