//! Markdown from people and models, made safe for a page: raw HTML in the text is shown as
//! text, and a link or image whose URL is not http(s), mailto or local is dropped to its text.

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd, html};

fn safe_url(url: &str) -> bool {
    let lower = url.trim().to_ascii_lowercase();
    match lower.split_once(':') {
        // No scheme before any '/', '?' or '#': a relative URL.
        Some((scheme, _)) if !scheme.contains(['/', '?', '#']) => {
            matches!(scheme, "http" | "https" | "mailto")
        }
        _ => true,
    }
}

/// `text` as HTML that cannot run script or load from elsewhere.
pub fn render(text: &str) -> String {
    let options =
        Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS;
    let mut dropped = Vec::new();
    let events = Parser::new_ext(text, options).filter_map(|event| match event {
        Event::Html(raw) | Event::InlineHtml(raw) => Some(Event::Text(raw)),
        Event::Start(Tag::Link { dest_url, .. }) if !safe_url(&dest_url) => {
            dropped.push(true);
            None
        }
        Event::Start(Tag::Link { link_type, dest_url, title, id }) => {
            dropped.push(false);
            Some(Event::Start(Tag::Link { link_type, dest_url, title, id }))
        }
        Event::End(TagEnd::Link) => (!dropped.pop().unwrap_or(false)).then_some(event),
        // Images would load from anywhere (and the CSP allows only this site): their text.
        Event::Start(Tag::Image { .. }) | Event::End(TagEnd::Image) => None,
        other => Some(other),
    });
    let mut out = String::with_capacity(text.len() * 2);
    html::push_html(&mut out, events);
    out
}

#[cfg(test)]
mod tests {
    use super::render;

    #[test]
    fn markdown_is_rendered() {
        let html = render("# Title\n\n*some* `code` and [a link](https://example.com)");
        assert!(html.contains("<h1>Title</h1>"), "{html}");
        assert!(html.contains("<em>some</em>"));
        assert!(html.contains("<code>code</code>"));
        assert!(html.contains(r#"<a href="https://example.com">a link</a>"#));
    }

    #[test]
    fn raw_html_is_shown_as_text() {
        let html = render("<script>alert(1)</script>\n\nhi <img src=x onerror=alert(1)>");
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
    }

    #[test]
    fn unsafe_links_keep_their_text_and_lose_their_target() {
        for url in ["javascript:alert(1)", "JavaScript:alert(1)", " data:text/html,x", "vbscript:x"]
        {
            let html = render(&format!("[click]({url})"));
            assert!(!html.contains("<a"), "{url}: {html}");
            assert!(html.contains("click"), "{url}: {html}");
        }
        assert!(render("[rel](/beads/lm-1)").contains(r#"<a href="/beads/lm-1">"#));
        assert!(render("[m](mailto:a@b.c)").contains("mailto:a@b.c"));
    }

    #[test]
    fn images_are_not_loaded() {
        let html = render("![alt text](https://evil.example/x.png)");
        assert!(!html.contains("<img"), "{html}");
        assert!(html.contains("alt text"));
    }
}
