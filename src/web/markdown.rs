//! Markdown from people and models, made safe for a page: raw HTML in the text is shown as
//! text, and a link or image whose URL is not http(s), mailto or local is dropped to its text.

use pulldown_cmark::{Event, HeadingLevel, Options, Parser, Tag, TagEnd, html};

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

/// The events of `text` with raw HTML turned to text and unsafe links and images dropped.
fn safe_events(text: &str) -> Vec<Event<'_>> {
    let options =
        Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS;
    let mut dropped = Vec::new();
    Parser::new_ext(text, options)
        .filter_map(|event| match event {
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
        })
        .collect()
}

fn to_html(text: &str, events: Vec<Event<'_>>) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    html::push_html(&mut out, events.into_iter());
    out
}

/// `text` as HTML that cannot run script or load from elsewhere.
pub fn render(text: &str) -> String {
    to_html(text, safe_events(text))
}

/// `render`, for text shown under a heading of level `parent`: its headings are moved down
/// so that the highest of them is one level below the parent (at most `h6`), and the page
/// keeps one outline.
pub fn render_under(text: &str, parent: HeadingLevel) -> String {
    let mut events = safe_events(text);
    let top = events
        .iter()
        .filter_map(|e| match e {
            Event::Start(Tag::Heading { level, .. }) => Some(*level as usize),
            _ => None,
        })
        .min();
    let Some(top) = top else { return to_html(text, events) };
    let shift = (parent as usize + 1).saturating_sub(top);
    let moved = |level: HeadingLevel| {
        HeadingLevel::try_from((level as usize + shift).min(6)).unwrap_or(HeadingLevel::H6)
    };
    for e in &mut events {
        match e {
            Event::Start(Tag::Heading { level, .. }) | Event::End(TagEnd::Heading(level)) => {
                *level = moved(*level)
            }
            _ => {}
        }
    }
    to_html(text, events)
}

#[cfg(test)]
mod tests {
    use super::{HeadingLevel, render, render_under};

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

    #[test]
    fn headings_under_a_parent_move_below_it_and_stay_safe() {
        let html = render_under("## Rules\n\n### Detail\n\n<script>x</script>", HeadingLevel::H2);
        assert!(html.contains("<h3>Rules</h3>"), "{html}");
        assert!(html.contains("<h4>Detail</h4>"), "{html}");
        assert!(!html.contains("<script"), "{html}");
        let deep = render_under("# One\n\n###### Six", HeadingLevel::H2);
        assert!(deep.contains("<h3>One</h3>") && deep.contains("<h6>Six</h6>"), "{deep}");
        assert_eq!(render_under("plain", HeadingLevel::H2), render("plain"));
    }
}
