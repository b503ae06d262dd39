//! `fs/walk`: breadth-first listing, name-sorted per level, bounded by depth, directory
//! and entry counts, with symlink-cycle protection when following directory links.

use std::collections::{HashSet, VecDeque};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use exec_protocol::fs::{EntryKind, WalkEntry, WalkError, WalkOptions, WalkResult};
use exec_protocol::{PathUri, RpcError};

use super::io_error;

const DEFAULT_MAX_DEPTH: usize = 64;
const DEFAULT_MAX_DIRECTORIES: usize = 10_000;
const DEFAULT_MAX_ENTRIES: usize = 100_000;

pub fn walk(root: &Path, opts: &WalkOptions) -> Result<WalkResult, RpcError> {
    let meta = fs::metadata(root).map_err(|e| io_error(e, root))?;
    if !meta.is_dir() {
        return Err(RpcError::invalid_request(format!(
            "path `{}` is not a directory",
            root.display()
        )));
    }
    let max_depth = opts.max_depth.unwrap_or(DEFAULT_MAX_DEPTH);
    let max_dirs = opts.max_directories.unwrap_or(DEFAULT_MAX_DIRECTORIES);
    let max_entries = opts.max_entries.unwrap_or(DEFAULT_MAX_ENTRIES);
    let mut seen = HashSet::from([(meta.dev(), meta.ino())]);
    let mut queue: VecDeque<(PathBuf, usize)> = VecDeque::from([(root.to_path_buf(), 0)]);
    let mut result = WalkResult {
        entries: Vec::new(),
        errors: Vec::new(),
        truncated: false,
    };
    let mut dirs_read = 0usize;
    while let Some((dir, depth)) = queue.pop_front() {
        if dirs_read >= max_dirs {
            result.truncated = true;
            break;
        }
        dirs_read += 1;
        let mut names: Vec<(String, PathBuf)> = match fs::read_dir(&dir) {
            Ok(rd) => rd
                .filter_map(Result::ok)
                .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
                .collect(),
            Err(e) => {
                result.errors.push(WalkError {
                    path: PathUri::from_path(&dir),
                    message: e.to_string(),
                });
                continue;
            }
        };
        names.sort();
        for (name, path) in names {
            let Ok(link) = fs::symlink_metadata(&path) else {
                continue;
            };
            let followed = if link.file_type().is_symlink() {
                fs::metadata(&path).ok()
            } else {
                Some(link.clone())
            };
            let is_dir = followed.as_ref().is_some_and(|m| m.is_dir());
            let kind = match (&followed, link.file_type().is_symlink()) {
                (Some(m), _) if m.is_dir() => EntryKind::Directory,
                (Some(m), _) if m.is_file() => EntryKind::File,
                (None, true) => EntryKind::Symlink,
                _ => EntryKind::Other,
            };
            if is_dir && opts.prune_hidden_directories && name.starts_with('.') {
                continue;
            }
            if result.entries.len() >= max_entries {
                result.truncated = true;
                return Ok(result);
            }
            result.entries.push(WalkEntry {
                path: PathUri::from_path(&path),
                kind,
            });
            let descend = is_dir && (!link.file_type().is_symlink() || opts.follow_directory_symlinks);
            if descend && depth < max_depth {
                let m = followed.as_ref().unwrap_or(&link);
                if seen.insert((m.dev(), m.ino())) {
                    queue.push_back((path, depth + 1));
                }
            }
        }
    }
    if !queue.is_empty() {
        result.truncated = true;
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_breadth_first_sorted_with_depth() {
        let dir = std::env::temp_dir().join(format!("walk-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("b/c/d")).unwrap();
        fs::write(dir.join("a.txt"), "").unwrap();
        fs::write(dir.join("b/z.txt"), "").unwrap();
        fs::create_dir_all(dir.join(".hidden")).unwrap();
        std::os::unix::fs::symlink(&dir, dir.join("b/loop")).unwrap();
        let names = |r: &WalkResult| {
            r.entries
                .iter()
                .map(|e| e.path.path().unwrap().strip_prefix(&dir).unwrap().display().to_string())
                .collect::<Vec<_>>()
        };
        let opts = WalkOptions {
            max_depth: Some(0),
            ..Default::default()
        };
        assert_eq!(names(&walk(&dir, &opts).unwrap()), vec![".hidden", "a.txt", "b"]);
        let opts = WalkOptions {
            max_depth: Some(1),
            prune_hidden_directories: true,
            follow_directory_symlinks: true,
            ..Default::default()
        };
        assert_eq!(
            names(&walk(&dir, &opts).unwrap()),
            vec!["a.txt", "b", "b/c", "b/loop", "b/z.txt"]
        );
        let opts = WalkOptions {
            max_entries: Some(2),
            ..Default::default()
        };
        assert!(walk(&dir, &opts).unwrap().truncated);
        let all = walk(
            &dir,
            &WalkOptions {
                follow_directory_symlinks: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert!(!all.truncated, "symlink loop must not be followed twice");
        fs::remove_dir_all(&dir).unwrap();
    }
}
