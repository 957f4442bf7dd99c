//! How a user's shell reaches this binary, for commands printed to be pasted.
//!
//! Under `cargo run` the binary lives in `target/…` and `nines` is not on `PATH` (or another,
//! older one is), so a printed `nines report …` would fail or run something else. The command
//! names `nines` only when that is this very binary; otherwise its full path, quoted when the
//! shell needs it.

use std::path::{Path, PathBuf};

/// `nines`, or the path of the running executable.
pub fn this_binary() -> String {
    let Ok(exe) = std::env::current_exe() else {
        return "nines".to_owned();
    };
    let exe = exe.canonicalize().unwrap_or(exe);
    let on_path = std::env::var_os("PATH").and_then(|p| first_on_path(&p, "nines"));
    match on_path {
        Some(found) if found.canonicalize().is_ok_and(|f| f == exe) => "nines".to_owned(),
        _ => shell_quote(&exe),
    }
}

/// The first `name` in the directories of `path` that is a file.
fn first_on_path(path: &std::ffi::OsStr, name: &str) -> Option<PathBuf> {
    std::env::split_paths(path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// `path` as one shell word: as it is when it has only safe characters, else single-quoted.
fn shell_quote(path: &Path) -> String {
    let text = path.to_string_lossy();
    let safe = |c: char| c.is_ascii_alphanumeric() || "/._-+:@%,".contains(c);
    if !text.is_empty() && text.chars().all(safe) {
        text.into_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_what_needs_it() {
        assert_eq!(
            shell_quote(Path::new("/work/target/release/nines")),
            "/work/target/release/nines"
        );
        assert_eq!(shell_quote(Path::new("/my dir/nines")), "'/my dir/nines'");
        assert_eq!(shell_quote(Path::new("/it's/nines")), r"'/it'\''s/nines'");
    }
}
