//! Renders every page with sample data into `consent-ui/preview/` (HTML files
//! plus `coffer.css`), for review and screenshots:
//!
//! ```sh
//! cargo run -p coffer-consent-ui --example preview [OUT_DIR]
//! ```
#![forbid(unsafe_code)]

use std::path::PathBuf;

use coffer_consent_ui::{Pages, sample, stylesheet};

fn main() -> std::io::Result<()> {
    let out = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("preview"));
    std::fs::create_dir_all(&out)?;
    let pages = Pages::with_stylesheet_href("coffer.css");
    for (name, html) in sample::render_all(&pages) {
        std::fs::write(out.join(name), html)?;
    }
    std::fs::write(out.join("coffer.css"), stylesheet().1)?;
    println!("wrote {}", out.display());
    Ok(())
}
