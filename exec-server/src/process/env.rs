//! The child environment: `env` alone, or an `envPolicy` base (inherit all/core/none,
//! default and custom excludes, `set`, `includeOnly`) with `env` overlaid last.

use std::collections::BTreeMap;

use exec_protocol::process::{EnvInherit, EnvPolicy};

/// Variables kept by `inherit: "core"`.
const CORE_VARS: &[&str] = &[
    "HOME", "LOGNAME", "PATH", "SHELL", "USER", "USERNAME", "TMPDIR", "TEMP", "TMP", "LANG",
];
/// Patterns removed unless `ignoreDefaultExcludes` is set.
const DEFAULT_EXCLUDES: &[&str] = &["*KEY*", "*SECRET*", "*TOKEN*"];
/// Server-only variables that never reach a child.
const NEVER_INHERITED: &[&str] = &["CODEX_EXEC_SERVER_EXIT_ON_STDIN_CLOSE"];

/// Builds the child environment from the server's environment `server_env`.
pub fn build(
    policy: Option<&EnvPolicy>,
    env: &BTreeMap<String, String>,
    server_env: impl Iterator<Item = (String, String)>,
) -> BTreeMap<String, String> {
    let Some(policy) = policy else {
        return env.clone();
    };
    let mut out: BTreeMap<String, String> = match policy.inherit {
        EnvInherit::All => server_env.collect(),
        EnvInherit::Core => server_env.filter(|(k, _)| CORE_VARS.contains(&k.as_str())).collect(),
        EnvInherit::None => BTreeMap::new(),
    };
    out.retain(|k, _| !NEVER_INHERITED.contains(&k.as_str()));
    if !policy.ignore_default_excludes {
        out.retain(|k, _| !DEFAULT_EXCLUDES.iter().any(|p| glob_match(p, k)));
    }
    out.retain(|k, _| !policy.exclude.iter().any(|p| glob_match(p, k)));
    out.extend(policy.set.iter().map(|(k, v)| (k.clone(), v.clone())));
    if !policy.include_only.is_empty() {
        out.retain(|k, _| policy.include_only.iter().any(|p| glob_match(p, k)));
    }
    out.extend(env.iter().map(|(k, v)| (k.clone(), v.clone())));
    out
}

/// Case-insensitive glob match with `*` and `?`.
fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.to_ascii_uppercase().chars().collect();
    let t: Vec<char> = text.to_ascii_uppercase().chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> impl Iterator<Item = (String, String)> {
        [
            ("PATH", "/bin"),
            ("HOME", "/root"),
            ("API_KEY", "k"),
            ("MARKER", "m"),
            ("CODEX_EXEC_SERVER_EXIT_ON_STDIN_CLOSE", "1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
    }

    #[test]
    fn globs() {
        assert!(glob_match("*key*", "API_KEY"));
        assert!(glob_match("A?I_*", "API_KEY"));
        assert!(!glob_match("*TOKEN*", "PATH"));
        assert!(glob_match("*", ""));
    }

    #[test]
    fn without_policy_env_is_everything() {
        let env = BTreeMap::from([("A".to_string(), "1".to_string())]);
        assert_eq!(build(None, &env, server()), env);
    }

    #[test]
    fn inherit_all_with_excludes_and_overlay() {
        let policy = EnvPolicy {
            inherit: EnvInherit::All,
            exclude: vec!["MARK*".into()],
            ..Default::default()
        };
        let env = BTreeMap::from([("PATH".to_string(), "/x".to_string())]);
        let out = build(Some(&policy), &env, server());
        assert_eq!(out.get("PATH").map(String::as_str), Some("/x"));
        assert_eq!(out.get("HOME").map(String::as_str), Some("/root"));
        assert!(!out.contains_key("API_KEY"));
        assert!(!out.contains_key("MARKER"));
        assert!(!out.contains_key("CODEX_EXEC_SERVER_EXIT_ON_STDIN_CLOSE"));
        let policy = EnvPolicy {
            inherit: EnvInherit::All,
            ignore_default_excludes: true,
            ..Default::default()
        };
        assert!(build(Some(&policy), &BTreeMap::new(), server()).contains_key("API_KEY"));
    }

    #[test]
    fn core_and_include_only() {
        let policy = EnvPolicy {
            inherit: EnvInherit::Core,
            ..Default::default()
        };
        let out = build(Some(&policy), &BTreeMap::new(), server());
        assert_eq!(out.keys().collect::<Vec<_>>(), vec!["HOME", "PATH"]);
        let policy = EnvPolicy {
            inherit: EnvInherit::All,
            include_only: vec!["PATH".into()],
            ..Default::default()
        };
        assert_eq!(build(Some(&policy), &BTreeMap::new(), server()).len(), 1);
    }
}
