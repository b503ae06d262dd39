//! The affinity cookie jar shared by every `http/request`: process-global, in memory
//! only, and strict. It stores and sends only Cloudflare infrastructure cookies
//! (`__cf_bm`, `__cflb`, `__cfruid`, `__cfseq`, `__cfwaitingroom`, `_cfuvid`,
//! `cf_clearance`, `cf_ob_info`, `cf_use_ob`, `cf_chl_*`), and only for HTTPS URLs of
//! ChatGPT hosts (`chatgpt.com`, `chat.openai.com`, `chatgpt-staging.com` and subdomains
//! of `chatgpt.com` and `chatgpt-staging.com`), under RFC 6265 domain, path and expiry
//! rules. Account, session and auth cookies are never kept, and a stored cookie never
//! goes to another host.

use std::sync::RwLock;

use cookie_store::{CookieStore as Store, RawCookie};
use reqwest::header::HeaderValue;
use url::Url;

const NAMES: &[&str] = &[
    "__cf_bm",
    "__cflb",
    "__cfruid",
    "__cfseq",
    "__cfwaitingroom",
    "_cfuvid",
    "cf_clearance",
    "cf_ob_info",
    "cf_use_ob",
];

/// Whether a cookie name is a Cloudflare infrastructure cookie.
pub fn is_affinity_cookie(name: &str) -> bool {
    NAMES.contains(&name) || name.starts_with("cf_chl_")
}

/// Whether the jar acts for `url`: HTTPS and a ChatGPT host (no suffix tricks).
pub fn is_chatgpt_url(url: &Url) -> bool {
    if url.scheme() != "https" {
        return false;
    }
    let Some(host) = url.host_str() else { return false };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    matches!(host.as_str(), "chatgpt.com" | "chat.openai.com" | "chatgpt-staging.com")
        || host.ends_with(".chatgpt.com")
        || host.ends_with(".chatgpt-staging.com")
}

/// The jar. Install it on a reqwest client with `cookie_provider`.
#[derive(Default)]
pub struct AffinityJar {
    store: RwLock<Store>,
}

impl AffinityJar {
    /// The `Cookie` header value the jar has for `url`, if any.
    pub fn header_for(&self, url: &Url) -> Option<HeaderValue> {
        if !is_chatgpt_url(url) {
            return None;
        }
        let store = self.store.read().unwrap_or_else(|e| e.into_inner());
        let pairs: Vec<String> = store
            .get_request_values(url)
            .filter(|(name, _)| is_affinity_cookie(name))
            .map(|(name, value)| format!("{name}={value}"))
            .collect();
        if pairs.is_empty() {
            return None;
        }
        HeaderValue::from_str(&pairs.join("; ")).ok()
    }

    /// Stores the affinity cookies among `set_cookie` values received from `url`.
    pub fn store_from(&self, set_cookie: &mut dyn Iterator<Item = &HeaderValue>, url: &Url) {
        if !is_chatgpt_url(url) {
            return;
        }
        let cookies: Vec<RawCookie<'static>> = set_cookie
            .filter_map(|v| std::str::from_utf8(v.as_bytes()).ok())
            .filter_map(|s| RawCookie::parse(s.to_string()).ok())
            .filter(|c| is_affinity_cookie(c.name()))
            .collect();
        if cookies.is_empty() {
            return;
        }
        let mut store = self.store.write().unwrap_or_else(|e| e.into_inner());
        for cookie in &cookies {
            // Cookies the RFC rules reject (a foreign Domain, say) are dropped.
            let _ = store.insert_raw(cookie, url);
        }
    }
}

impl reqwest::cookie::CookieStore for AffinityJar {
    fn set_cookies(&self, cookie_headers: &mut dyn Iterator<Item = &HeaderValue>, url: &Url) {
        self.store_from(cookie_headers, url);
    }

    fn cookies(&self, url: &Url) -> Option<HeaderValue> {
        self.header_for(url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    fn set(jar: &AffinityJar, u: &str, cookies: &[&str]) {
        let values: Vec<HeaderValue> = cookies.iter().map(|c| HeaderValue::from_str(c).unwrap()).collect();
        jar.store_from(&mut values.iter(), &url(u));
    }

    fn get(jar: &AffinityJar, u: &str) -> String {
        jar.header_for(&url(u))
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    }

    #[test]
    fn hosts() {
        for ok in [
            "https://chatgpt.com/x",
            "https://chat.openai.com/",
            "https://ab.chatgpt.com/",
            "https://chatgpt-staging.com/",
            "https://a.b.chatgpt-staging.com/",
            "https://CHATGPT.COM/",
        ] {
            assert!(is_chatgpt_url(&url(ok)), "{ok}");
        }
        for bad in [
            "http://chatgpt.com/",
            "https://evilchatgpt.com/",
            "https://chatgpt.com.evil.example/",
            "https://foo.chat.openai.com/",
            "https://api.openai.com/",
            "https://127.0.0.1/",
        ] {
            assert!(!is_chatgpt_url(&url(bad)), "{bad}");
        }
    }

    #[test]
    fn keeps_only_cloudflare_cookies() {
        let jar = AffinityJar::default();
        set(
            &jar,
            "https://chatgpt.com/a",
            &[
                "__cflb=west; Path=/",
                "chatgpt_session=secret",
                "cf_chl_rc_i=1",
                "cf_clearance=c; Secure",
                "other=x",
            ],
        );
        let h = get(&jar, "https://chatgpt.com/b");
        for want in ["__cflb=west", "cf_chl_rc_i=1", "cf_clearance=c"] {
            assert!(h.contains(want), "{h}");
        }
        assert!(!h.contains("secret") && !h.contains("other"), "{h}");
        assert_eq!(get(&jar, "https://api.openai.com/"), "");
        assert_eq!(get(&jar, "http://chatgpt.com/"), "");
        assert_eq!(
            get(&jar, "https://foo.chatgpt.com/"),
            "",
            "host-only cookies stay on their host"
        );
    }

    #[test]
    fn replace_delete_and_domain_cookies() {
        let jar = AffinityJar::default();
        set(&jar, "https://chatgpt.com/", &["__cflb=west"]);
        set(&jar, "https://chatgpt.com/", &["__cflb=central"]);
        assert_eq!(get(&jar, "https://chatgpt.com/"), "__cflb=central");
        set(&jar, "https://chatgpt.com/", &["__cflb=gone; Max-Age=0"]);
        assert_eq!(get(&jar, "https://chatgpt.com/"), "");
        set(&jar, "https://chatgpt.com/", &["__cf_bm=d; Domain=chatgpt.com"]);
        assert_eq!(get(&jar, "https://ab.chatgpt.com/"), "__cf_bm=d");
        set(&jar, "https://chatgpt.com/", &["_cfuvid=e; Domain=evil.example"]);
        assert_eq!(get(&jar, "https://ab.chatgpt.com/"), "__cf_bm=d");
        set(&jar, "http://chatgpt.com/", &["__cfruid=plain"]);
        assert!(!get(&jar, "https://chatgpt.com/").contains("plain"));
    }
}
