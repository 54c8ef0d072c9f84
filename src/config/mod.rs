//! Configuration: TOML files -> a validated [`Config`].
//!
//! `raw` holds the serde types as written, `validate` checks them all at once and reports
//! every problem as a [`Diagnostic`] with file, line, column, key and hint; `model` is what
//! the rest of capstan reads. Loading is pure apart from reading the files.

pub mod diag;
pub mod duration;
pub mod model;
pub mod raw;
pub mod split;
pub mod validate;

use std::path::{Path, PathBuf};

pub use diag::Diagnostic;
pub use model::*;

/// The config the README's first command runs on: a shipped example, embedded in the binary.
pub const EMBEDDED_EXAMPLE: &str = include_str!("../../config/example.toml");

/// Parses one config text into a whole config (a `[global]` table is optional).
pub fn from_str(file: &str, text: &str) -> Result<Config, Vec<Diagnostic>> {
    let part = validate::parse_file(file, text)?;
    let global = part.global.unwrap_or_default();
    let diags = validate::check_poll_every(&part.poll_every, global.poll_interval_secs);
    if !diags.is_empty() {
        return Err(diags);
    }
    Ok(Config {
        global,
        targets: part.targets,
    }
    .own_shard())
}

/// The `.toml` files named, directories expanded (sorted, not recursive).
pub fn expand_paths(paths: &[PathBuf]) -> Result<Vec<PathBuf>, Vec<Diagnostic>> {
    let mut files = Vec::new();
    let mut diags = Vec::new();
    for p in paths {
        if p.is_dir() {
            match std::fs::read_dir(p) {
                Ok(rd) => {
                    let mut found: Vec<PathBuf> = rd
                        .filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|f| f.extension().is_some_and(|x| x == "toml") && f.is_file())
                        .collect();
                    found.sort();
                    if found.is_empty() {
                        diags.push(file_diag(p, "the directory has no .toml file", None));
                    }
                    files.extend(found);
                }
                Err(e) => diags.push(file_diag(p, &format!("cannot read directory: {e}"), None)),
            }
        } else {
            files.push(p.clone());
        }
    }
    if diags.is_empty() {
        Ok(files)
    } else {
        Err(diags)
    }
}

fn file_diag(p: &Path, message: &str, hint: Option<&str>) -> Diagnostic {
    Diagnostic {
        file: p.display().to_string(),
        line: 0,
        column: 0,
        key: String::new(),
        message: message.into(),
        hint: hint.map(String::from),
    }
}

/// The largest config file read (32 MiB, about 70,000 targets like those of the daemon
/// benchmark): a larger one is refused before it fills memory (a device such as
/// `/dev/zero` never ends).
pub const MAX_FILE_BYTES: u64 = 32 << 20;

/// Reads one config file: at most [`MAX_FILE_BYTES`], UTF-8. A file that cannot be read
/// gets the system's error with its path, a larger one an error saying so, and text that
/// is not UTF-8 the line and column of its first bad byte.
pub fn read_file(p: &Path) -> Result<String, Diagnostic> {
    use std::io::Read;
    let mut bytes = Vec::new();
    let read =
        std::fs::File::open(p).and_then(|f| f.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes));
    if let Err(e) = read {
        let hint = match e.kind() {
            std::io::ErrorKind::NotFound => "check the path",
            std::io::ErrorKind::PermissionDenied => "make the file readable by this user",
            _ => "check that the path names a readable file",
        };
        return Err(file_diag(p, &format!("cannot read file: {e}"), Some(hint)));
    }
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(file_diag(
            p,
            &format!(
                "the file is larger than {} MiB, the most a config file may hold",
                MAX_FILE_BYTES >> 20
            ),
            Some("split the targets over several files of a directory"),
        ));
    }
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let bytes = e.as_bytes();
        let valid = std::str::from_utf8(&bytes[..at]).unwrap_or_default();
        let name = p.display().to_string();
        let (line, column) = diag::SourceMap::new(&name, valid).line_col(at);
        Diagnostic {
            file: name,
            line,
            column,
            key: String::new(),
            message: format!("the file is not UTF-8 text: byte 0x{:02x}", bytes[at]),
            hint: Some("TOML files are UTF-8; save it as UTF-8".into()),
        }
    })
}

/// Loads and merges config files and directories: at most one `[global]`, target names
/// unique across files. Every problem in every file is reported. With `[global.shard]`,
/// only the targets of that shard are returned (all are validated).
pub fn load(paths: &[PathBuf]) -> Result<Config, Vec<Diagnostic>> {
    let files = expand_paths(paths)?;
    let mut diags = Vec::new();
    let mut global: Option<(Global, String)> = None;
    let mut targets: Vec<Target> = Vec::new();
    // Target name -> where it is first defined ("file:line:column").
    let mut places: std::collections::HashMap<String, String> = Default::default();
    // Resource identity -> the first target that sets it and its resource key's place.
    let mut resources: std::collections::HashMap<String, (String, String)> = Default::default();
    let mut poll_every = Vec::new();
    for f in &files {
        let name = f.display().to_string();
        let text = match read_file(f) {
            Ok(t) => t,
            Err(d) => {
                diags.push(d);
                continue;
            }
        };
        match validate::parse_file(&name, &text) {
            Ok(part) => {
                poll_every.extend(part.poll_every);
                if let Some(g) = part.global {
                    if let Some((_, first)) = &global {
                        diags.push(file_diag(
                            f,
                            &format!("a second [global] table (the first is in {first})"),
                            Some("keep [global] in one file of the directory"),
                        ));
                    } else {
                        global = Some((g, name.clone()));
                    }
                }
                let places_of = part.target_places.into_iter().zip(part.resource_places);
                for (t, ((index, line, column), (rline, rcol))) in
                    part.targets.into_iter().zip(places_of)
                {
                    if let Some(first) = places.get(&t.name) {
                        diags.push(Diagnostic {
                            file: name.clone(),
                            line,
                            column,
                            key: format!("target[{index}].name"),
                            message: format!("duplicate target name `{}`", t.name),
                            hint: Some(format!("{first} already defines it; names must be unique")),
                        });
                        continue;
                    }
                    places.insert(t.name.clone(), format!("{name}:{line}:{column}"));
                    let (rkey, id, _) = validate::resource_identity(&t.resource);
                    if let Some((first, place)) = resources.get(&id) {
                        let (message, hint) = validate::shared_resource(&t, first, place);
                        diags.push(Diagnostic {
                            file: name.clone(),
                            line: rline,
                            column: rcol,
                            key: format!("target[{index}].{rkey}"),
                            message,
                            hint: Some(hint),
                        });
                        continue;
                    }
                    resources.insert(id, (t.name.clone(), format!("{name}:{rline}:{rcol}")));
                    targets.push(t);
                }
            }
            Err(mut d) => diags.append(&mut d),
        }
    }
    let poll_interval = global
        .as_ref()
        .map_or(Global::default().poll_interval_secs, |g| {
            g.0.poll_interval_secs
        });
    diags.extend(validate::check_poll_every(&poll_every, poll_interval));
    if diags.is_empty() && targets.is_empty() {
        let f = files
            .first()
            .map(|f| f.display().to_string())
            .unwrap_or_default();
        diags.push(Diagnostic {
            file: f,
            line: 0,
            column: 0,
            key: String::new(),
            message: "the config has no [[target]]".into(),
            hint: Some("add a [[target]] table; see config/example.toml".into()),
        });
    }
    if diags.is_empty() {
        // Every file is checked whole; then only this daemon's shard is kept.
        Ok(Config {
            global: global.map(|g| g.0).unwrap_or_default(),
            targets,
        }
        .own_shard())
    } else {
        Err(diags)
    }
}

/// The JSON Schema of a config file, for editors.
pub fn json_schema() -> serde_json::Value {
    let schema = schemars::schema_for!(raw::RawFile);
    serde_json::to_value(schema).expect("a schema serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_name_defined_in_two_files_names_the_first_place() {
        let dir = std::env::temp_dir().join(format!("capstan-load-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let target = |name: &str| {
            format!(
                "[[target]]\nname = \"{name}\"\nkind = \"ecs_service\"\ncluster = \"c\"\nservice = \"{name}\"\nmin = 1\nmax = 4\n[[target.metric]]\nname = \"cpu\"\nsource = \"ecs_cpu\"\n[[target.policy]]\ntype = \"target_tracking\"\nmetric = \"cpu\"\ntarget_value = 60\n"
            )
        };
        std::fs::write(dir.join("a.toml"), target("web") + &target("api")).unwrap();
        std::fs::write(dir.join("b.toml"), format!("\n{}", target("api"))).unwrap();
        let diags = load(std::slice::from_ref(&dir)).unwrap_err();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(diags.len(), 1, "{diags:?}");
        let d = &diags[0];
        assert!(d.file.ends_with("b.toml"), "{d}");
        assert_eq!((d.line, d.column, d.key.as_str()), (3, 8, "target[0].name"));
        let hint = d.hint.as_deref().unwrap();
        assert!(hint.contains("a.toml:16:8 already defines it"), "{hint}");
    }

    #[test]
    fn two_targets_on_one_resource_in_two_files_are_an_error_naming_both() {
        let dir = std::env::temp_dir().join(format!("capstan-shared-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let target = |name: &str, resource: &str| {
            format!(
                "[[target]]\nname = \"{name}\"\n{resource}\nmin = 1\nmax = 4\n[[target.metric]]\nname = \"cpu\"\nsource = \"cloudwatch\"\nnamespace = \"AWS/EC2\"\nmetric_name = \"CPUUtilization\"\n[[target.policy]]\ntype = \"target_tracking\"\nmetric = \"cpu\"\ntarget_value = 60\n"
            )
        };
        let asg = |n: &str| format!("kind = \"asg\"\nasg_name = \"{n}\"");
        let aurora = |n: &str| format!("kind = \"aurora_readers\"\ndb_cluster = \"{n}\"");
        std::fs::write(
            dir.join("a.toml"),
            target("web", &asg("web-asg")) + &target("db", &aurora("Shop-DB")),
        )
        .unwrap();
        std::fs::write(
            dir.join("b.toml"),
            // RDS identifiers ignore case; Auto Scaling group names do not.
            target("web2", &asg("web-asg"))
                + &target("db2", &aurora("shop-db"))
                + &target("web3", &asg("Web-asg")),
        )
        .unwrap();
        let diags = load(std::slice::from_ref(&dir)).unwrap_err();
        std::fs::remove_dir_all(&dir).unwrap();
        let got: Vec<String> = diags
            .iter()
            .map(|d| {
                let file = Path::new(&d.file).file_name().unwrap().to_string_lossy();
                format!("{file}:{}:{} {} | {}", d.line, d.column, d.key, d.message)
            })
            .collect();
        let a = dir.join("a.toml").display().to_string();
        assert_eq!(
            got,
            [
                format!("b.toml:4:12 target[0].asg_name | target `web2` scales Auto Scaling group `web-asg`, which target `web` ({a}:4:12) already scales"),
                format!("b.toml:19:14 target[1].db_cluster | target `db2` scales the readers of Aurora cluster `shop-db`, which target `db` ({a}:19:14) already scales"),
            ]
        );
        assert!(diags[0].hint.as_deref().unwrap().contains("one target"));
    }
}
