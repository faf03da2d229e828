//! Checks the stylesheet's colour pairs against WCAG 2 contrast ratios, in
//! light and dark mode: text ≥ 4.5:1, controls and focus rings ≥ 3:1.

use std::collections::HashMap;

use coffer_consent_ui::stylesheet;

/// The `--name: #rrggbb` custom properties of the first `:root { … }` block
/// at or after `from`.
fn vars(css: &str, from: usize) -> HashMap<String, [u8; 3]> {
    let start = from + css[from..].find(":root {").expect(":root block");
    let end = start + css[start..].find('}').unwrap();
    let mut out = HashMap::new();
    for decl in css[start + 7..end].split(';') {
        let Some((name, value)) = decl.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        if let (Some(name), Some(hex)) = (name.strip_prefix("--"), value.strip_prefix('#')) {
            assert_eq!(hex.len(), 6, "--{name}: use #rrggbb");
            let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).unwrap();
            out.insert(name.to_owned(), [byte(0), byte(2), byte(4)]);
        }
    }
    out
}

fn luminance([r, g, b]: [u8; 3]) -> f64 {
    let channel = |c: u8| {
        let c = f64::from(c) / 255.0;
        if c <= 0.040_45 {
            c / 12.92
        } else {
            ((c + 0.055) / 1.055).powf(2.4)
        }
    };
    0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)
}

fn ratio(a: [u8; 3], b: [u8; 3]) -> f64 {
    let (la, lb) = (luminance(a), luminance(b));
    (la.max(lb) + 0.05) / (la.min(lb) + 0.05)
}

/// Text colours and the backgrounds they are drawn on.
const TEXT: &[(&str, &[&str])] = &[
    (
        "text",
        &["bg", "surface", "tag-bg", "error-bg", "success-bg", "warning-bg"],
    ),
    ("muted", &["bg", "surface", "tag-bg"]),
    ("link", &["bg", "surface", "tag-bg"]),
    ("on-primary", &["primary", "primary-hover"]),
    ("on-danger", &["error"]),
    ("error", &["bg", "surface", "error-bg"]),
    ("success", &["surface", "success-bg"]),
    ("sensitive", &["sensitive-bg"]),
];

/// Control borders, focus rings and the selected-card border.
const UI: &[(&str, &[&str])] = &[
    ("control", &["bg", "surface"]),
    ("primary", &["bg", "surface"]),
    ("selected", &["bg", "surface"]),
    ("focus", &["bg", "surface", "tag-bg"]),
    ("error", &["bg", "surface"]),
    ("sensitive-border", &["sensitive-bg", "surface"]),
];

fn check(mode: &str, vars: &HashMap<String, [u8; 3]>) -> Vec<String> {
    let mut failures = Vec::new();
    for (min, pairs) in [(4.5, TEXT), (3.0, UI)] {
        for (fg, bgs) in pairs {
            for bg in *bgs {
                let r = ratio(vars[*fg], vars[*bg]);
                if r < min {
                    failures.push(format!("{mode}: --{fg} on --{bg} is {r:.2}:1, needs {min}:1"));
                }
            }
        }
    }
    failures
}

#[test]
fn colours_meet_wcag_contrast_in_light_and_dark_mode() {
    let css = std::str::from_utf8(stylesheet().1).unwrap();
    let light = vars(css, 0);
    let dark_at = css
        .find("@media (prefers-color-scheme: dark)")
        .expect("dark mode block");
    let mut dark = light.clone();
    dark.extend(vars(css, dark_at));
    assert!(light.len() >= 20 && dark != light);
    let mut failures = check("light", &light);
    failures.extend(check("dark", &dark));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn ratio_matches_known_values() {
    assert!((ratio([0, 0, 0], [255, 255, 255]) - 21.0).abs() < 1e-9);
    assert!((ratio([0x77, 0x77, 0x77], [255, 255, 255]) - 4.48).abs() < 0.01);
}

#[test]
fn stylesheet_covers_focus_motion_and_dark_mode() {
    let css = std::str::from_utf8(stylesheet().1).unwrap();
    assert!(css.contains(":focus-visible {\n  outline: 3px solid var(--focus);\n  outline-offset: 3px;"));
    assert!(css.contains("@media (prefers-reduced-motion: reduce)"));
    assert!(css.contains("@media (prefers-color-scheme: dark)"));
    assert!(css.contains("min-height: 2.75rem"), "44px targets");
    assert!(
        !css.contains("@import") && !css.contains("url("),
        "no external resources"
    );
}
