//! `file://` URIs that carry absolute paths on the wire.
//!
//! Parsing follows the reference server: percent-decoding, case-insensitive scheme and
//! `file://localhost/` are accepted; native paths, other schemes and queries are rejected
//! while decoding params (-32602). A URI naming another host decodes, but using it as a
//! path fails with -32600 ("'<uri>' is invalid on 'linux'"), as the reference answers.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use url::Url;

use crate::error::RpcError;

/// An absolute local path carried as a `file://` URI.
#[derive(Clone, PartialEq, Eq)]
pub struct PathUri {
    path: Result<PathBuf, String>,
}

impl PathUri {
    pub fn from_path(path: impl Into<PathBuf>) -> Self {
        Self { path: Ok(path.into()) }
    }

    /// Parses a URI string; `Err` carries the -32602 message.
    pub fn parse(text: &str) -> Result<Self, String> {
        let url = Url::parse(text).map_err(|e| format!("invalid URI: {e}"))?;
        if url.scheme() != "file" {
            return Err(format!("unsupported path URI scheme `{}`", url.scheme()));
        }
        if url.query().is_some() {
            return Err("query parameters are not allowed in path URIs".to_string());
        }
        let path = url
            .to_file_path()
            .map_err(|()| format!("'{text}' is invalid on 'linux'"));
        Ok(Self { path })
    }

    /// The local path, or the -32600 error for a URI that names another host.
    pub fn path(&self) -> Result<&Path, RpcError> {
        self.path.as_deref().map_err(|m| RpcError::invalid_request(m.clone()))
    }

    pub fn to_uri_string(&self) -> String {
        match &self.path {
            Ok(p) => path_to_uri(p),
            Err(m) => m.clone(),
        }
    }
}

/// Renders an absolute path as a `file://` URI (percent-encoding what needs it).
pub fn path_to_uri(path: &Path) -> String {
    match Url::from_file_path(path) {
        Ok(u) => u.into(),
        Err(()) => format!("file://{}", path.display()),
    }
}

impl std::fmt::Debug for PathUri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_uri_string())
    }
}

impl Serialize for PathUri {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_uri_string())
    }
}

impl<'de> Deserialize<'de> for PathUri {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(d)?;
        PathUri::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_reference_forms() {
        let p = PathUri::parse("FILE:///tmp/a%20b").unwrap();
        assert_eq!(p.path().unwrap(), Path::new("/tmp/a b"));
        let p = PathUri::parse("file://localhost/etc").unwrap();
        assert_eq!(p.path().unwrap(), Path::new("/etc"));
        assert_eq!(
            PathUri::parse("/tmp/x").unwrap_err(),
            "invalid URI: relative URL without a base"
        );
        assert_eq!(
            PathUri::parse("http://x/y").unwrap_err(),
            "unsupported path URI scheme `http`"
        );
        assert_eq!(
            PathUri::parse("file:///tmp?x=1").unwrap_err(),
            "query parameters are not allowed in path URIs"
        );
        let remote = PathUri::parse("file://relative/a.txt").unwrap();
        let err = remote.path().unwrap_err();
        assert_eq!(err.code, -32600);
        assert_eq!(err.message, "'file://relative/a.txt' is invalid on 'linux'");
    }

    #[test]
    fn renders_uris_with_escapes() {
        assert_eq!(path_to_uri(Path::new("/tmp/a b")), "file:///tmp/a%20b");
    }
}
