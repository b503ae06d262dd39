//! The policy model and its decoding from the wire.

use std::path::PathBuf;

use serde_json::Value;

/// What a sandboxed process or file operation may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SandboxPolicy {
    /// No isolation.
    DangerFullAccess,
    /// Read everything, write nothing; no network.
    ReadOnly { network_access: bool },
    /// Read everything, write the listed roots (plus cwd and temp dirs unless excluded).
    WorkspaceWrite {
        writable_roots: Vec<PathBuf>,
        network_access: bool,
        exclude_tmp: bool,
    },
}

/// Why a `sandbox` value could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("unsupported sandbox policy: {0}")]
    Unsupported(String),
    #[error("invalid sandbox policy: {0}")]
    Invalid(String),
}

impl SandboxPolicy {
    /// Decodes the wire value; `None` and `null` mean no sandbox.
    pub fn from_wire(value: Option<&Value>) -> Result<SandboxPolicy, PolicyError> {
        let Some(value) = value.filter(|v| !v.is_null()) else {
            return Ok(SandboxPolicy::DangerFullAccess);
        };
        let Value::Object(obj) = value else {
            return Err(PolicyError::Invalid("expected an object".into()));
        };
        if let Some(permissions) = obj.get("permissions") {
            return from_managed(permissions, obj.get("workspaceRoots"));
        }
        let kind = obj.get("type").and_then(Value::as_str).unwrap_or_default();
        let network_access = flag(obj.get("networkAccess").or(obj.get("network_access")));
        match kind {
            "danger-full-access" | "dangerFullAccess" => Ok(SandboxPolicy::DangerFullAccess),
            "read-only" | "readOnly" => Ok(SandboxPolicy::ReadOnly { network_access }),
            "workspace-write" | "workspaceWrite" => Ok(SandboxPolicy::WorkspaceWrite {
                writable_roots: paths(obj.get("writableRoots").or(obj.get("writable_roots")))?,
                network_access,
                exclude_tmp: flag(obj.get("excludeTmp").or(obj.get("exclude_slash_tmp"))),
            }),
            "" => Err(PolicyError::Invalid("missing `type`".into())),
            other => Err(PolicyError::Unsupported(format!("`{other}`"))),
        }
    }

    /// True when the policy restricts nothing.
    pub fn is_unrestricted(&self) -> bool {
        matches!(self, SandboxPolicy::DangerFullAccess)
    }
}

fn flag(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => matches!(s.as_str(), "enabled" | "true" | "full"),
        _ => false,
    }
}

fn paths(v: Option<&Value>) -> Result<Vec<PathBuf>, PolicyError> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    let Value::Array(items) = v else {
        return Err(PolicyError::Invalid("writable roots must be an array".into()));
    };
    items
        .iter()
        .map(|item| {
            let s = item
                .as_str()
                .ok_or_else(|| PolicyError::Invalid("a root is not a string".into()))?;
            let path = s.strip_prefix("file://").unwrap_or(s);
            if !path.starts_with('/') {
                return Err(PolicyError::Invalid(format!("root `{s}` is not absolute")));
            }
            Ok(PathBuf::from(path))
        })
        .collect()
}

/// The managed permission profile of a Codex client.
fn from_managed(permissions: &Value, roots: Option<&Value>) -> Result<SandboxPolicy, PolicyError> {
    let kind = permissions.get("type").and_then(Value::as_str).unwrap_or_default();
    match kind {
        "disabled" | "danger-full-access" | "dangerFullAccess" | "unrestricted" => {
            return Ok(SandboxPolicy::DangerFullAccess);
        }
        "managed" => {}
        other => {
            return Err(PolicyError::Unsupported(format!("permission profile `{other}`")));
        }
    }
    let network_access = match permissions.get("network") {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) => matches!(s.as_str(), "enabled" | "unrestricted" | "full"),
        Some(other) => return Err(PolicyError::Unsupported(format!("network setting {other}"))),
    };
    let fs = permissions.get("file_system").or(permissions.get("fileSystem"));
    let fs_kind = fs
        .and_then(|f| f.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("restricted");
    if fs_kind == "unrestricted" && network_access {
        return Ok(SandboxPolicy::DangerFullAccess);
    }
    let entries = fs.and_then(|f| f.get("entries")).and_then(Value::as_array);
    let writes = entries.is_some_and(|e| {
        e.iter()
            .any(|entry| entry.get("access").and_then(Value::as_str) == Some("write"))
    });
    if writes || fs_kind == "unrestricted" {
        Ok(SandboxPolicy::WorkspaceWrite {
            writable_roots: paths(roots)?,
            network_access,
            exclude_tmp: false,
        })
    } else {
        Ok(SandboxPolicy::ReadOnly { network_access })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decodes_plain_policies() {
        assert!(SandboxPolicy::from_wire(None).unwrap().is_unrestricted());
        assert!(SandboxPolicy::from_wire(Some(&Value::Null)).unwrap().is_unrestricted());
        let p = SandboxPolicy::from_wire(Some(
            &json!({"type":"workspace-write","writableRoots":["/w"],"networkAccess":true}),
        ))
        .unwrap();
        assert_eq!(
            p,
            SandboxPolicy::WorkspaceWrite {
                writable_roots: vec!["/w".into()],
                network_access: true,
                exclude_tmp: false
            }
        );
        assert_eq!(
            SandboxPolicy::from_wire(Some(&json!({"type":"read-only"}))).unwrap(),
            SandboxPolicy::ReadOnly { network_access: false }
        );
        assert!(SandboxPolicy::from_wire(Some(&json!({"type":"weird"}))).is_err());
        assert!(SandboxPolicy::from_wire(Some(&json!(3))).is_err());
    }

    #[test]
    fn decodes_the_codex_managed_profile() {
        let v = json!({"permissions":{"type":"managed","file_system":{"type":"restricted","entries":[
            {"path":{"type":"special","value":{"kind":"root"}},"access":"read"},
            {"path":{"type":"special","value":{"kind":"project_roots"}},"access":"write"}]},
            "network":"restricted"},"cwd":"file:///w","workspaceRoots":["file:///w"]});
        let p = SandboxPolicy::from_wire(Some(&v)).unwrap();
        assert_eq!(
            p,
            SandboxPolicy::WorkspaceWrite {
                writable_roots: vec!["/w".into()],
                network_access: false,
                exclude_tmp: false
            }
        );
    }
}
