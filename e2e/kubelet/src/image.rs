//! Which local binary runs a container: images are never pulled, the last
//! path component of the image reference names a binary in `--bin-dir`.

use std::path::{Path, PathBuf};

/// The binary an image stands for: the image reference without registry,
/// repository path, tag and digest (`ghcr.io/eddy-dev/eddy-processor:0.1.0`
/// → `eddy-processor`).
pub fn binary_name(image: &str) -> Option<&str> {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    let name = last.split(':').next().unwrap_or(last);
    (!name.is_empty()).then_some(name)
}

/// What to execute for a container: the program and its arguments (not yet
/// `$(VAR)`-expanded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub program: PathBuf,
    pub args: Vec<String>,
}

/// Maps a container's image, `command` and `args` to a binary in `bin_dir`.
///
/// Without `command` the image's binary runs with `args`. With `command`,
/// its first element is replaced by the local binary when its basename is
/// the image's binary, or when it is an absolute path whose basename is a
/// binary in `bin_dir`. `exists` says whether `bin_dir` holds a binary.
/// The error is the message of an `ErrImageNeverPull` waiting state.
pub fn invocation(
    image: &str,
    command: &[String],
    args: &[String],
    bin_dir: &Path,
    exists: &dyn Fn(&str) -> bool,
) -> Result<Invocation, String> {
    let image_binary = binary_name(image).filter(|name| exists(name));
    let program = match command.first() {
        None => image_binary.map(str::to_string),
        Some(first) => {
            let base = Path::new(first)
                .file_name()
                .and_then(|name| name.to_str())
                .unwrap_or(first);
            if image_binary == Some(base) || (first.starts_with('/') && exists(base)) {
                Some(base.to_string())
            } else {
                None
            }
        }
    };
    let Some(program) = program else {
        let what = match command.first() {
            None => format!("image {image:?}"),
            Some(first) => format!("image {image:?} with command {first:?}"),
        };
        return Err(format!(
            "{what} is not a local Eddy binary in {}: this node runs only \
             local Eddy binaries and never pulls images",
            bin_dir.display()
        ));
    };
    let mut all_args: Vec<String> = command.iter().skip(1).cloned().collect();
    all_args.extend(args.iter().cloned());
    Ok(Invocation {
        program: bin_dir.join(program),
        args: all_args,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn only_eddy(name: &str) -> bool {
        matches!(name, "eddy-processor" | "eddy-operator")
    }

    #[test]
    fn image_references_name_binaries() {
        for (image, name) in [
            ("ghcr.io/eddy-dev/eddy-processor:0.1.0", "eddy-processor"),
            ("eddy-processor", "eddy-processor"),
            ("localhost:5000/eddy-processor", "eddy-processor"),
            ("eddy-processor@sha256:abc", "eddy-processor"),
            ("reg.io/a/b/eddy-operator:1@sha256:abc", "eddy-operator"),
        ] {
            assert_eq!(binary_name(image), Some(name), "{image}");
        }
        assert_eq!(binary_name(""), None);
    }

    #[test]
    fn no_command_runs_the_image_binary_with_args() {
        let got = invocation(
            "ghcr.io/eddy-dev/eddy-processor:0.1.0",
            &[],
            &strings(&["run", "/etc/job.yaml"]),
            Path::new("/bin-dir"),
            &only_eddy,
        );
        assert_eq!(
            got,
            Ok(Invocation {
                program: "/bin-dir/eddy-processor".into(),
                args: strings(&["run", "/etc/job.yaml"]),
            })
        );
    }

    #[test]
    fn command_naming_the_image_binary_or_an_absolute_local_binary_is_mapped() {
        let by_name = invocation(
            "eddy-processor:1",
            &strings(&["eddy-processor", "run"]),
            &strings(&["x"]),
            Path::new("/b"),
            &only_eddy,
        )
        .expect("mapped");
        assert_eq!(by_name.program, PathBuf::from("/b/eddy-processor"));
        assert_eq!(by_name.args, strings(&["run", "x"]));

        let absolute = invocation(
            "something/else:1",
            &strings(&["/usr/local/bin/eddy-operator", "run"]),
            &[],
            Path::new("/b"),
            &only_eddy,
        )
        .expect("mapped");
        assert_eq!(absolute.program, PathBuf::from("/b/eddy-operator"));
    }

    #[test]
    fn unknown_images_and_commands_are_refused() {
        assert_eq!(
            invocation("busybox:1.36", &[], &[], Path::new("/b"), &only_eddy),
            Err(
                "image \"busybox:1.36\" is not a local Eddy binary in /b: this node runs \
                 only local Eddy binaries and never pulls images"
                    .to_string()
            )
        );
        assert!(invocation(
            "eddy-processor",
            &strings(&["/bin/sh", "-c", "x"]),
            &[],
            Path::new("/b"),
            &only_eddy
        )
        .is_err());
        // Relative commands other than the image's binary are not guessed.
        assert!(invocation(
            "busybox",
            &strings(&["eddy-processor"]),
            &[],
            Path::new("/b"),
            &only_eddy
        )
        .is_err());
    }
}
