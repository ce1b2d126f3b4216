//! Writes a volume's files into its directory: each file replaced
//! atomically only when its content or mode changed, files no longer
//! wanted removed.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::files::File;

pub fn sync(dir: &Path, files: &[File]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut wanted = BTreeSet::new();
    for file in files {
        let path = dir.join(&file.path);
        wanted.insert(path.clone());
        let same_content = std::fs::read(&path).is_ok_and(|old| old == file.data);
        let same_mode =
            std::fs::metadata(&path).is_ok_and(|m| m.permissions().mode() & 0o7777 == file.mode);
        if same_content && same_mode {
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let temporary = path.with_file_name(format!(
            ".{}.tmp",
            path.file_name().and_then(|n| n.to_str()).unwrap_or("file")
        ));
        std::fs::write(&temporary, &file.data)?;
        std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(file.mode))?;
        std::fs::rename(&temporary, &path)?;
    }
    for stale in files_under(dir)?
        .into_iter()
        .filter(|p| !wanted.contains(p))
    {
        std::fs::remove_file(stale)?;
    }
    Ok(())
}

fn files_under(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            found.extend(files_under(&entry.path())?);
        } else {
            found.push(entry.path());
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, data: &str, mode: u32) -> File {
        File {
            path: path.into(),
            data: data.as_bytes().to_vec(),
            mode,
        }
    }

    #[test]
    fn writes_updates_and_prunes() {
        let dir = tempfile::tempdir().expect("tempdir");
        sync(
            dir.path(),
            &[file("a", "1", 0o644), file("sub/b", "2", 0o600)],
        )
        .expect("sync");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("sub/b")).unwrap(),
            "2"
        );
        let mode = std::fs::metadata(dir.path().join("sub/b"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);

        sync(dir.path(), &[file("a", "changed", 0o644)]).expect("sync");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("a")).unwrap(),
            "changed"
        );
        assert!(!dir.path().join("sub/b").exists(), "pruned");
    }
}
