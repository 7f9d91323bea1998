//! A browser as far as HTTP goes: it keeps cookies, follows nothing on its own, and reads
//! the CSRF token out of the pages it gets, as a person's browser would submit it.
#![allow(dead_code)] // each test uses a different part

use std::collections::BTreeMap;

use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};

pub struct Browser {
    base: String,
    http: reqwest::Client,
    cookies: BTreeMap<String, String>,
}

/// A page as the browser got it.
#[derive(Debug)]
pub struct Page {
    pub status: StatusCode,
    pub location: Option<String>,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Page {
    /// The value of the first hidden `csrf` field.
    pub fn csrf(&self) -> String {
        let at = self.body.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
        self.body[at..].split('"').next().expect("its value").to_owned()
    }

    pub fn contains(&self, text: &str) -> bool {
        self.body.contains(text)
    }
}

impl Browser {
    pub fn new(base: &str) -> Browser {
        Browser {
            base: base.to_owned(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .pool_idle_timeout(std::time::Duration::from_secs(2))
                .build()
                .expect("client"),
            cookies: BTreeMap::new(),
        }
    }

    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies.get(name).map(String::as_str)
    }

    pub fn forget_cookie(&mut self, name: &str) {
        self.cookies.remove(name);
    }

    async fn send(&mut self, req: reqwest::RequestBuilder) -> Page {
        let jar = self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>();
        let req = if jar.is_empty() { req } else { req.header(COOKIE, jar.join("; ")) };
        let res = req.send().await.expect("request");
        for set in res.headers().get_all(SET_COOKIE) {
            let set = set.to_str().expect("ascii cookie");
            let pair = set.split(';').next().expect("name=value");
            let (name, value) = pair.split_once('=').expect("name=value");
            let removed = set.to_lowercase().contains("max-age=0");
            if removed || value.is_empty() {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        let status = res.status();
        let location =
            res.headers().get(LOCATION).map(|v| v.to_str().expect("ascii location").to_owned());
        let headers = res.headers().clone();
        Page { status, location, headers, body: res.text().await.expect("body") }
    }

    pub async fn get(&mut self, path: &str) -> Page {
        let req = self.http.get(format!("{}{path}", self.base));
        self.send(req).await
    }

    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let body = form
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        self.send(req).await
    }

    /// Logs in through the login page; panics unless it works.
    pub async fn log_in(&mut self, username: &str, password: &str) {
        let form = self.get("/login").await;
        assert_eq!(form.status, StatusCode::OK, "{}", form.body);
        let csrf = form.csrf();
        let done = self
            .post(
                "/login",
                &[("csrf", &csrf), ("username", username), ("password", password), ("next", "/")],
            )
            .await;
        assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    }
}

fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A browser logged in as `who` (one of the test app's users).
pub async fn logged_in(app: &super::TestApp, who: &str) -> Browser {
    let mut b = Browser::new(&app.base);
    b.log_in(who, super::PASSWORD).await;
    b
}
