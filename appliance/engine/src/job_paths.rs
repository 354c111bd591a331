//! Which server paths a job may read: its `sources` and its source
//! handler's granted directory. A job runs with the server's rights, so a
//! job that backs up the datastore or the configuration directory hands
//! its TLS key, catalog and secrets to whoever may download the snapshot.
//!
//! Rules (checked when a job is saved through the server, and for the
//! datastore again before each run):
//! - every path is absolute, with no `.` or `..` component;
//! - it is resolved (symlinks followed, as far as it exists) before it is
//!   compared, so a link cannot lead around the rules;
//! - it is never, lies never inside, and never contains a protected path
//!   (the datastore, the configuration directory, the TLS files);
//! - unless the caller may use any path (an admin), it lies inside one of
//!   the allowed roots (`[jobs] source_roots`; none by default).

use std::path::{Component, Path, PathBuf};

/// The rules a server applies to job paths.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PathRules {
    /// Where jobs saved by operators may read.
    pub roots: Vec<PathBuf>,
    /// Paths no job may read, nor read around.
    pub protected: Vec<PathBuf>,
}

/// A path a job may not use, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PathRefused(pub String);

/// `path` with symlinks resolved as far as it exists; the part that does not
/// exist yet is appended as written.
pub fn resolve(path: &Path) -> PathBuf {
    let mut existing = path.to_path_buf();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = existing.canonicalize() {
            return rest.iter().rev().fold(real, |p, c: &std::ffi::OsString| p.join(c));
        }
        match (existing.file_name().map(ToOwned::to_owned), existing.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                existing = parent.to_path_buf();
            }
            _ => return path.to_path_buf(),
        }
    }
}

fn overlaps(a: &Path, b: &Path) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

impl PathRules {
    /// Check one path a job would read. `any_root`: the caller may use
    /// paths outside the allowed roots (an admin).
    pub fn check(&self, what: &str, path: &str, any_root: bool) -> Result<(), PathRefused> {
        let p = Path::new(path);
        let plain = p.is_absolute()
            && p.components().all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
            && !path.split('/').any(|seg| seg == "." || seg == "..")
            && !path.contains('\0');
        if !plain {
            return Err(PathRefused(format!(
                "{what} {path:?} must be an absolute path without `.` or `..` components"
            )));
        }
        let real = resolve(p);
        for protected in &self.protected {
            let protected = resolve(protected);
            if overlaps(&real, &protected) {
                return Err(PathRefused(format!(
                    "{what} {path:?} is, lies inside or contains {}, which holds the server's own data \
                     (datastore, configuration, keys); no job may read it",
                    protected.display()
                )));
            }
        }
        if !any_root && !self.roots.iter().any(|root| real.starts_with(resolve(root))) {
            let roots = if self.roots.is_empty() {
                "none are allowed; an admin may add `source_roots` under [jobs] in cairn.toml".to_owned()
            } else {
                self.roots.iter().map(|r| r.display().to_string()).collect::<Vec<_>>().join(", ")
            };
            return Err(PathRefused(format!(
                "{what} {path:?} is outside the directories operators may back up ({roots}); \
                 ask an admin to save this job"
            )));
        }
        Ok(())
    }

    /// Check every path of `job`.
    pub fn check_job(&self, job: &model::Job, any_root: bool) -> Result<(), PathRefused> {
        for s in &job.sources {
            self.check("source", s, any_root)?;
        }
        if let Some(dir) = job.source.as_ref().and_then(|s| s.grant_dir.as_deref()) {
            self.check("granted directory", dir, any_root)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_paths_stay_under_the_roots_and_away_from_the_servers_data() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("srv");
        let data = dir.path().join("data");
        let etc = dir.path().join("etc-cairn");
        for d in [&root, &data, &etc] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::os::unix::fs::symlink(&data, root.join("link-to-data")).unwrap();
        let rules = PathRules { roots: vec![root.clone()], protected: vec![data.clone(), etc.clone()] };
        let s = |p: &Path| p.display().to_string();
        // Operators: under a root only.
        assert_eq!(rules.check("source", &s(&root.join("www")), false), Ok(()));
        assert!(rules.check("source", "/usr", false).unwrap_err().0.contains("outside"));
        // Nobody: the datastore, the configuration, around them or through a link.
        for bad in [data.clone(), data.join("server/key.pem"), etc.clone(), dir.path().to_path_buf()] {
            let e = rules.check("source", &s(&bad), true).unwrap_err();
            assert!(e.0.contains("no job may read it"), "{bad:?}: {e}");
        }
        let e = rules.check("source", &s(&root.join("link-to-data/server")), false).unwrap_err();
        assert!(e.0.contains("no job may read it"), "{e}");
        // Admins: anywhere else.
        assert_eq!(rules.check("source", "/usr", true), Ok(()));
        // Plain absolute paths only.
        for bad in ["srv/www", "/srv/../etc", "/srv/./x", ""] {
            assert!(rules.check("source", bad, true).is_err(), "{bad}");
        }
        // No roots at all: operators may add no path.
        let none = PathRules { roots: vec![], protected: vec![] };
        assert!(none.check("source", "/usr", false).unwrap_err().0.contains("source_roots"));
    }
}
