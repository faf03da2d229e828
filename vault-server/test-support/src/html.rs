//! Reading the server-rendered pages.

/// `s` with the five entities the templates escape (`&quot;`, `&#39;`,
/// `&lt;`, `&gt;`, `&amp;`) replaced by their characters.
pub fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}
