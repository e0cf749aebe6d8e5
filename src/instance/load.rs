//! Instance files and directories → instances and problems.

use std::collections::HashSet;
use std::collections::hash_map::{Entry, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

use super::model::Instance;
use super::parse::parse_str;
use super::problem::ConfigProblem;

/// What a load produced: the valid instances, and every problem of the files
/// that were refused. One bad file never hides the others.
#[derive(Debug, Default)]
pub struct Loaded {
    pub instances: Vec<Instance>,
    pub problems: Vec<ConfigProblem>,
}

/// Reads and parses one instance file.
///
/// # Errors
/// The file cannot be read or is not UTF-8, or every problem of its content.
pub fn load_file(path: &Path) -> Result<Instance, Vec<ConfigProblem>> {
    let whole_file = |reason: String| {
        vec![ConfigProblem {
            file: path.to_owned(),
            json_path: "$".to_owned(),
            reason,
        }]
    };
    let bytes = fs::read(path).map_err(|e| whole_file(format!("cannot read the file: {e}")))?;
    let text = String::from_utf8(bytes)
        .map_err(|e| whole_file(format!("not UTF-8 text: {}", e.utf8_error())))?;
    parse_str(path, &text)
}

/// Loads a file, or every `*.json` file directly in a directory.
///
/// See [`load_paths`] for the rules.
pub fn load_path(path: &Path) -> Loaded {
    load_paths(&[path])
}

/// Loads several files and directories as one set of instances.
///
/// A directory contributes its regular `*.json` files (symbolic links
/// followed), sorted by name, not recursing and skipping names that start
/// with `.`: Kubernetes mounts a ConfigMap as `name.json` links next to a
/// hidden `..data` directory, and editors leave hidden swap files. A file
/// reached twice (named directly and through its directory) is read once.
///
/// Instance ids must be unique across everything loaded: the later file
/// with a taken id is refused with a problem, because two instances with one
/// id would share jobs and checkpoints.
pub fn load_paths<P: AsRef<Path>>(paths: &[P]) -> Loaded {
    let mut loaded = Loaded::default();
    let mut files = Vec::new();
    for path in paths {
        match instance_files(path.as_ref()) {
            Ok(found) => files.extend(found),
            Err(problem) => loaded.problems.push(problem),
        }
    }

    let mut seen = HashSet::new();
    let mut ids: HashMap<String, PathBuf> = HashMap::new();
    for file in files {
        let identity = fs::canonicalize(&file).unwrap_or_else(|_| file.clone());
        if !seen.insert(identity) {
            continue;
        }
        match load_file(&file) {
            Ok(instance) => match ids.entry(instance.id.clone()) {
                Entry::Occupied(first) => loaded.problems.push(ConfigProblem {
                    json_path: instance.id_origin.json_path().to_owned(),
                    reason: format!(
                        "instance id {} is already used by {}; ids must be unique",
                        super::problem::quoted(&instance.id),
                        first.get().display()
                    ),
                    file,
                }),
                Entry::Vacant(slot) => {
                    slot.insert(file);
                    loaded.instances.push(instance);
                }
            },
            Err(mut problems) => loaded.problems.append(&mut problems),
        }
    }
    loaded
}

/// The instance files `path` stands for.
fn instance_files(path: &Path) -> Result<Vec<PathBuf>, ConfigProblem> {
    let problem = |reason: String| ConfigProblem {
        file: path.to_owned(),
        json_path: "$".to_owned(),
        reason,
    };
    let metadata = fs::metadata(path).map_err(|e| problem(format!("cannot read: {e}")))?;
    if !metadata.is_dir() {
        return Ok(vec![path.to_owned()]);
    }
    let entries =
        fs::read_dir(path).map_err(|e| problem(format!("cannot list the directory: {e}")))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| problem(format!("cannot list the directory: {e}")))?;
        let file = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !name.starts_with('.') && name.ends_with(".json") && file.is_file() {
            files.push(file);
        }
    }
    files.sort();
    Ok(files)
}
