//! Renders every page with sample data (HTML files plus `coffer.css`), for
//! review and screenshots, into `target/consent-preview/` or the folder
//! given:
//!
//! ```sh
//! cargo run --example preview [OUT_DIR]
//! ```
#![forbid(unsafe_code)]

use std::path::PathBuf;

use coffer_consent_ui::sample::write_preview;

fn main() -> std::io::Result<()> {
    let out = std::env::args_os().nth(1).map(PathBuf::from).unwrap_or_else(|| {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
        target.join("consent-preview")
    });
    let written = write_preview(&out)?;
    println!("wrote {} files to {}", written.len(), out.display());
    Ok(())
}
