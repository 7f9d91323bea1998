//! Logging in, for the API and the login page alike: the password check behind the rate
//! limit (a wrong username and a wrong password cost the same and read the same), and the
//! session cookie.

use actix_web::HttpRequest;
use actix_web::cookie::{Cookie, SameSite, time};

use super::AppState;
use crate::error::Error;
use crate::users::sessions::{self, Origin, Session, Started};
use crate::users::{User, password};

/// The client's address for the per-address limit: the connection's peer, unless that is a
/// proxy Loom was told to trust (`LOOM_TRUSTED_PROXIES`); then the nearest address in
/// `X-Forwarded-For` that is not one of them (what a client sends itself sits further left,
/// and is never believed). Without this, every login behind a proxy would share one address
/// and one limit.
fn client_address(req: &HttpRequest, trusted: &[std::net::IpAddr]) -> String {
    let Some(peer) = req.peer_addr().map(|a| a.ip()) else { return "unknown".into() };
    let forwarded = req.headers().get_all("x-forwarded-for").filter_map(|v| v.to_str().ok());
    nearest_untrusted(peer, forwarded, trusted).to_string()
}

fn nearest_untrusted<'a>(
    peer: std::net::IpAddr,
    forwarded: impl Iterator<Item = &'a str>,
    trusted: &[std::net::IpAddr],
) -> std::net::IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    let hops: Vec<&str> = forwarded.flat_map(|v| v.split(',')).map(str::trim).collect();
    let mut nearest = peer;
    for hop in hops.iter().rev() {
        match hop.parse::<std::net::IpAddr>() {
            Ok(ip) if trusted.contains(&ip) => nearest = ip,
            Ok(ip) => return ip,
            // Garbage from a client: stop at the last proxy that vouched for what it saw.
            Err(_) => return nearest,
        }
    }
    nearest
}

/// The user whose password this is, or 401 (429 after too many failures for the account
/// or the address).
pub async fn check_password(
    state: &AppState,
    req: &HttpRequest,
    username: &str,
    given: String,
) -> Result<User, Error> {
    let keys = [
        format!("user:{}", username.trim().to_lowercase()),
        format!("addr:{}", client_address(req, &state.trusted_proxies)),
    ];
    if !state.login_limiter.try_begin(&keys) {
        return Err(Error::RateLimited("too many failed logins; wait a few minutes".into()));
    }
    let mut conn = state.pool.get().await?;
    let user = User::find_by_username(&mut conn, username.trim()).await?;
    let stored = user.as_ref().map(|u| u.password_hash.clone());
    let ok = password::verify(given, stored).await?;
    let Some(user) = user.filter(|_| ok) else {
        return Err(Error::unauthenticated("wrong username or password"));
    };
    state.login_limiter.succeeded(&keys);
    Ok(user)
}

/// A new session for `user`, and the cookie that carries it.
pub async fn start_session(
    state: &AppState,
    req: &HttpRequest,
    user: &User,
) -> Result<(Started, Cookie<'static>), Error> {
    let origin = Origin {
        address: Some(client_address(req, &state.trusted_proxies)),
        user_agent: req
            .headers()
            .get(actix_web::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    };
    let mut conn = state.pool.get().await?;
    let started = Session::start(&mut conn, user.id, &state.sessions, &origin).await?;
    tracing::info!(user.id = %user.id, "user logged in (browser session)");
    let cookie = session_cookie(req, started.secret.clone(), Some(state.sessions.absolute));
    Ok((started, cookie))
}

/// The cookie that ends the browser's session (the row is deleted separately).
pub fn removal_cookie(req: &HttpRequest) -> Cookie<'static> {
    let mut c = session_cookie(req, String::new(), None);
    c.make_removal();
    c
}

/// HttpOnly, SameSite=Lax (links from elsewhere open the dashboard logged in; writes need
/// the CSRF token anyway), Secure when the request came over TLS (directly or through a
/// proxy saying so), for the whole site.
fn session_cookie(
    req: &HttpRequest,
    value: String,
    max_age: Option<std::time::Duration>,
) -> Cookie<'static> {
    let mut c = Cookie::build(sessions::COOKIE, value)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(req.connection_info().scheme() == "https")
        .finish();
    if let Some(age) = max_age {
        c.set_max_age(time::Duration::seconds(i64::try_from(age.as_secs()).unwrap_or(i64::MAX)));
    }
    c
}

#[cfg(test)]
mod tests {
    use super::nearest_untrusted;
    use std::net::IpAddr;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("an address")
    }

    #[test]
    fn only_a_trusted_proxy_is_believed_about_who_the_client_is() {
        let proxy = [ip("10.0.0.2")];
        let header = ["6.6.6.6, 203.0.113.7"];
        // Not from the proxy: the peer itself, whatever it claims.
        assert_eq!(
            nearest_untrusted(ip("198.51.100.1"), header.into_iter(), &proxy),
            ip("198.51.100.1")
        );
        // From the proxy: the address the proxy saw, not what the client prepended.
        assert_eq!(
            nearest_untrusted(ip("10.0.0.2"), header.into_iter(), &proxy),
            ip("203.0.113.7")
        );
        assert_eq!(
            nearest_untrusted(ip("10.0.0.2"), ["nonsense"].into_iter(), &proxy),
            ip("10.0.0.2")
        );
        assert_eq!(nearest_untrusted(ip("10.0.0.2"), std::iter::empty(), &proxy), ip("10.0.0.2"));
    }
}
