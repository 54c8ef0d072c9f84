//! Raw TOML -> validated [`Config`]. Pure: text in, config or every diagnostic out.
//!
//! Each `[global]` and `[[target]]` table is deserialized on its own, so a type error in one
//! target does not hide the errors of the others; then every semantic rule runs and all
//! problems are reported together.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;

use chrono::{DateTime, Datelike, Utc};
use serde::de::DeserializeOwned;
use toml::de::{DeTable, DeValue, ValueDeserializer};
use toml::Spanned;

use super::diag::{
    backticked, closest, key_span_within, path_at, remove_at, span_of, Diagnostic, Path, Seg,
    SourceMap,
};
use super::duration::parse_duration;
use super::model::*;
use super::raw::*;

/// Largest capacity accepted anywhere (ECS allows 5000 tasks per service; this leaves room).
pub const MAX_CAPACITY: i64 = 100_000;

/// What one file contributes: its global section (if any) and its targets.
#[derive(Debug)]
pub struct FilePart {
    pub global: Option<Global>,
    pub targets: Vec<Target>,
    /// Where each target's name is, for cross-file duplicate checks: (index, line, column).
    pub target_places: Vec<(usize, usize, usize)>,
    /// Where each target's resource key is (`service`, `asg_name`, `db_cluster`), for
    /// cross-file checks that no two targets set one resource: (line, column).
    pub resource_places: Vec<(usize, usize)>,
    /// Every `poll_every` set, with its place, when the file has no `[global]` table: to
    /// check against the poll interval once the files are merged ([`check_poll_every`]; a
    /// file with `[global]` is checked against its own poll interval).
    pub poll_every: Vec<PollEveryPlace>,
}

/// A metric's `poll_every` and where it is written.
#[derive(Debug, Clone)]
pub struct PollEveryPlace {
    pub secs: u64,
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub key: String,
}

/// `poll_every` shorter than the poll interval would promise reads capstan never makes:
/// an error at the place of each (the interval is `[global] poll_interval`, whichever file
/// holds it). Longer values that are not a multiple are rounded up at run time.
pub fn check_poll_every(places: &[PollEveryPlace], poll_interval_secs: u64) -> Vec<Diagnostic> {
    places
        .iter()
        .filter(|p| p.secs < poll_interval_secs)
        .map(|p| Diagnostic {
            file: p.file.clone(),
            line: p.line,
            column: p.column,
            key: p.key.clone(),
            message: format!(
                "poll_every {}s is shorter than the poll interval {poll_interval_secs}s",
                p.secs
            ),
            hint: Some(format!(
                "capstan reads metrics once per poll interval at most; use {poll_interval_secs}s or more, or remove poll_every to read it every tick"
            )),
        })
        .collect()
}

struct Ctx<'a> {
    map: &'a SourceMap<'a>,
    root: &'a Spanned<DeTable<'a>>,
    /// Where `root`'s text starts in the file: 0 for the whole file or its prefix, the
    /// target's offset for a target parsed alone ([`super::split`]).
    offset: usize,
    /// For a target parsed alone: its index in the file. `root` holds it as `target[0]`;
    /// paths and keys name it by this index.
    target: Option<usize>,
    diags: Vec<Diagnostic>,
    /// Keys already reported by serde and removed to read the rest of their table: rules
    /// about them (such as "missing key") would only repeat the report.
    removed: Vec<String>,
    poll_every: Vec<PollEveryPlace>,
}

impl<'a> Ctx<'a> {
    fn new(map: &'a SourceMap<'a>, root: &'a Spanned<DeTable<'a>>) -> Self {
        Ctx {
            map,
            root,
            offset: 0,
            target: None,
            diags: Vec::new(),
            removed: Vec::new(),
            poll_every: Vec::new(),
        }
    }

    /// The span (in `root`'s text) of the value at a path of the file.
    fn span(&self, path: &Path) -> std::ops::Range<usize> {
        match (self.target, path.0.as_slice()) {
            (Some(_), [Seg::Key(k), Seg::Index(_), rest @ ..]) if k == "target" => {
                let mut local = vec![Seg::Key("target".into()), Seg::Index(0)];
                local.extend_from_slice(rest);
                span_of(self.root, &Path(local))
            }
            _ => span_of(self.root, path),
        }
    }

    /// Line and column in the file of a span of `root`'s text.
    fn line_col(&self, span: &std::ops::Range<usize>) -> (usize, usize) {
        self.map.line_col(span.start + self.offset)
    }

    /// A diagnostic at a span of `root`'s text.
    fn diag(
        &self,
        span: std::ops::Range<usize>,
        key: String,
        message: String,
        hint: Option<String>,
    ) -> Diagnostic {
        let at = span.start + self.offset..span.end + self.offset;
        self.map.diag(Some(at), key, message, hint)
    }

    /// The dotted key of the deepest value at an offset of `root`'s text, as the file
    /// names it.
    fn key_at(&self, offset: usize) -> String {
        let mut path = path_at(self.root, offset);
        if let (Some(i), Some(Seg::Index(local))) = (self.target, path.0.get_mut(1)) {
            *local = i;
        }
        path.dotted()
    }

    fn err(&mut self, path: &Path, message: impl Into<String>, hint: Option<String>) {
        let dotted = path.dotted();
        let shadowed = self.removed.iter().any(|r| {
            dotted == *r
                || (dotted.starts_with(r.as_str())
                    && matches!(dotted.as_bytes().get(r.len()), Some(b'.' | b'[')))
        });
        if shadowed {
            return;
        }
        let span = self.span(path);
        let d = self.diag(span, dotted, message.into(), hint);
        self.diags.push(d);
    }

    fn missing(&mut self, path: &Path, hint: impl Into<String>) {
        let key = match path.0.last() {
            Some(Seg::Key(k)) => k.clone(),
            _ => path.dotted(),
        };
        self.err(path, format!("missing key `{key}`"), Some(hint.into()));
    }

    /// Reports a serde error from deserializing the table at `base`.
    fn serde_err(&mut self, base: &Path, e: toml::de::Error) {
        let mut msg = e.message().trim().to_string();
        let mut span = e.span().unwrap_or_else(|| self.span(base));
        let names: Vec<String> = backticked(&msg).into_iter().map(String::from).collect();
        let hint;
        if msg.starts_with("unknown field") && !names.is_empty() {
            let bad = names[0].as_str();
            if let Some(ks) = key_span_within(self.root, &span, bad) {
                span = ks;
            }
            let expected = &names[1..];
            hint = Some(match closest(bad, expected.iter().map(String::as_str)) {
                Some(c) => format!("did you mean `{c}`?"),
                None => format!("valid keys here: {}", expected.join(", ")),
            });
            msg = format!("unknown key `{bad}`");
        } else if msg.contains("invalid type") {
            hint = Some(
                "check the value's type: strings are quoted, numbers and booleans are not".into(),
            );
        } else {
            hint =
                Some("check the value at this place; `capstan schema` describes every key".into());
        }
        let key = self.key_at(span.start);
        let key = if key.is_empty() { base.dotted() } else { key };
        let d = self.diag(span, key, msg, hint);
        self.diags.push(d);
    }

    fn duration(&mut self, v: &Option<String>, path: &Path, default: u64) -> u64 {
        match v {
            None => default,
            Some(s) => match parse_duration(s) {
                Ok(d) => d,
                Err(e) => {
                    self.err(
                        path,
                        e,
                        Some("write durations like \"90s\", \"5m\" or \"1h30m\"".into()),
                    );
                    default
                }
            },
        }
    }

    fn capacity(&mut self, v: Option<i64>, path: &Path) -> Option<u32> {
        let v = v?;
        if v < 0 {
            self.err(
                path,
                format!("capacity {v} is negative"),
                Some("use 0 or more".into()),
            );
            None
        } else if v > MAX_CAPACITY {
            self.err(
                path,
                format!("capacity {v} is larger than {MAX_CAPACITY}"),
                Some("this is almost certainly a typo".into()),
            );
            None
        } else {
            Some(v as u32)
        }
    }

    /// A string that must be one of `choices`.
    fn choice<'c>(&mut self, v: &str, choices: &[&'c str], path: &Path) -> Option<&'c str> {
        if let Some(c) = choices.iter().find(|c| **c == v) {
            return Some(c);
        }
        let hint = match closest(v, choices.iter().copied()) {
            Some(c) => format!("did you mean `{c}`?"),
            None => format!("use one of: {}", choices.join(", ")),
        };
        self.err(path, format!("unknown value `{v}`"), Some(hint));
        None
    }

    fn finite(&mut self, v: Option<f64>, path: &Path, positive: bool) -> Option<f64> {
        let v = v?;
        if !v.is_finite() || (positive && v <= 0.0) {
            let what = if positive {
                "a positive number"
            } else {
                "a finite number"
            };
            let hint = if positive {
                "use a number above 0, e.g. 70"
            } else {
                "use an ordinary number, e.g. 0 or 10.5"
            };
            self.err(path, format!("{v} is not {what}"), Some(hint.into()));
            return None;
        }
        Some(v)
    }
}

/// Parses and validates one config text. `file` is only used in diagnostics.
///
/// A file of the usual layout (a prefix such as `[global]`, then `[[target]]` tables) is
/// parsed one target at a time, each target's TOML tree dropped once it is validated, so a
/// file of thousands of targets never holds them all as TOML at once ([`super::split`]);
/// the result and every diagnostic are those of one parse of the whole file, which is what
/// any other layout gets, and any text with a syntax error.
pub fn parse_file(file: &str, text: &str) -> Result<FilePart, Vec<Diagnostic>> {
    let map = SourceMap::new(file, text);
    if let Some(split) = super::split::split(text) {
        if let Some(part) = parse_split(&map, text, &split) {
            return part;
        }
    }
    parse_whole(&map, text)
}

/// What the tables of one file add up to while they are read.
#[derive(Default)]
struct FileAcc {
    diags: Vec<Diagnostic>,
    poll_every: Vec<PollEveryPlace>,
    targets: Vec<Target>,
    target_places: Vec<(usize, usize, usize)>,
    resource_places: Vec<(usize, usize)>,
    /// Target name -> index of the first target with it.
    seen: BTreeMap<String, usize>,
    /// Resource identity ([`resource_identity`]) -> the first target that sets it: its
    /// name and the line and column of its resource key.
    resources: BTreeMap<String, (String, usize, usize)>,
}

impl FileAcc {
    fn absorb(&mut self, ctx: Ctx<'_>) {
        self.diags.extend(ctx.diags);
        self.poll_every.extend(ctx.poll_every);
    }

    fn finish(mut self, global: Option<Global>) -> Result<FilePart, Vec<Diagnostic>> {
        let mut poll_every = self.poll_every;
        if let Some(g) = &global {
            self.diags
                .extend(check_poll_every(&poll_every, g.poll_interval_secs));
            poll_every.clear();
        }
        if self.diags.is_empty() {
            Ok(FilePart {
                global,
                targets: self.targets,
                target_places: self.target_places,
                resource_places: self.resource_places,
                poll_every,
            })
        } else {
            self.diags.sort_by_key(|d| (d.line, d.column));
            Err(self.diags)
        }
    }
}

fn syntax_error(map: &SourceMap<'_>, e: &toml::de::Error) -> Vec<Diagnostic> {
    let hint = Some("this is a TOML syntax error; see https://toml.io for the format".into());
    vec![map.diag(
        e.span(),
        String::new(),
        e.message().trim().to_string(),
        hint,
    )]
}

/// The file parsed whole.
fn parse_whole(map: &SourceMap<'_>, text: &str) -> Result<FilePart, Vec<Diagnostic>> {
    let root = match DeTable::parse(text) {
        Ok(r) => r,
        Err(e) => return Err(syntax_error(map, &e)),
    };
    let mut acc = FileAcc::default();
    let mut ctx = Ctx::new(map, &root);
    let global = file_top(&mut ctx);
    match root.get_ref().get("target").map(|v| v.get_ref()) {
        None => {}
        Some(DeValue::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                file_target(&mut ctx, &mut acc, item, i);
            }
        }
        Some(_) => ctx.err(
            &Path::root().at("target"),
            "`target` must be an array of tables",
            Some("write each target as [[target]]".into()),
        ),
    }
    acc.absorb(ctx);
    acc.finish(global)
}

/// The file parsed as its prefix and then one target at a time; `None` when a part does
/// not parse or is not what [`super::split`] promised (the caller then parses it whole).
fn parse_split(
    map: &SourceMap<'_>,
    text: &str,
    split: &super::split::Split,
) -> Option<Result<FilePart, Vec<Diagnostic>>> {
    let prefix = DeTable::parse(&text[..split.prefix_end]).ok()?;
    if prefix.get_ref().contains_key("target") {
        return None;
    }
    let mut acc = FileAcc::default();
    let mut ctx = Ctx::new(map, &prefix);
    let global = file_top(&mut ctx);
    acc.absorb(ctx);
    drop(prefix);
    for (i, range) in split.targets.iter().enumerate() {
        let root = DeTable::parse(&text[range.clone()]).ok()?;
        let item = match root.get_ref().get("target").map(|v| v.get_ref()) {
            Some(DeValue::Array(items)) if items.len() == 1 && root.get_ref().len() == 1 => {
                &items[0]
            }
            _ => return None,
        };
        let mut ctx = Ctx::new(map, &root);
        ctx.offset = range.start;
        ctx.target = Some(i);
        file_target(&mut ctx, &mut acc, item, i);
        acc.absorb(ctx);
    }
    Some(acc.finish(global))
}

/// The file's top level: unknown tables reported, `[global]` validated.
fn file_top(ctx: &mut Ctx<'_>) -> Option<Global> {
    let root = ctx.root;
    for (k, _) in root.get_ref().iter() {
        let key = k.get_ref().as_ref();
        if key != "global" && key != "target" {
            let hint = match closest(key, ["global", "target"]) {
                Some(c) => format!("did you mean `{c}`?"),
                None => "a config file has a [global] table and [[target]] tables".into(),
            };
            let d = ctx.diag(
                k.span(),
                key.to_string(),
                format!("unknown table `{key}`"),
                Some(hint),
            );
            ctx.diags.push(d);
        }
    }
    root.get_ref().get("global").and_then(|v| {
        let path = Path::root().at("global");
        deserialize::<RawGlobal>(ctx, v, &path).map(|raw| validate_global(ctx, &raw, &path))
    })
}

/// One `[[target]]` table, the file's `i`th.
fn file_target(ctx: &mut Ctx<'_>, acc: &mut FileAcc, item: &Spanned<DeValue<'_>>, i: usize) {
    let path = Path::root().at("target").at(i);
    // Duplicate names are checked on the raw text, so they are found even when the rest of
    // the table does not deserialize.
    let mut duplicate = false;
    if let Some(name) = item
        .get_ref()
        .get("name")
        .and_then(|n| n.get_ref().as_str())
    {
        if let Some(first) = acc.seen.insert(name.to_string(), i) {
            duplicate = true;
            ctx.err(
                &path.at("name"),
                format!("duplicate target name `{name}`"),
                Some(format!(
                    "target[{first}] already uses it; names must be unique"
                )),
            );
        }
    }
    if let Some(raw) = deserialize::<RawTarget>(ctx, item, &path) {
        let (line, col) = ctx.line_col(&ctx.span(&path.at("name")));
        if let Some(t) = validate_target(ctx, &raw, &path) {
            let (rkey, id, _) = resource_identity(&t.resource);
            let rpath = path.at(rkey);
            let (rline, rcol) = ctx.line_col(&ctx.span(&rpath));
            match acc.resources.get(&id) {
                // A second definition of one target is reported as that alone.
                _ if duplicate => {}
                Some((first, fline, fcol)) => {
                    let place = format!("{}:{fline}:{fcol}", ctx.map.file);
                    let (message, hint) = shared_resource(&t, first, &place);
                    ctx.err(&rpath, message, Some(hint));
                }
                None => {
                    acc.resources.insert(id, (t.name.clone(), rline, rcol));
                }
            }
            acc.targets.push(t);
            acc.target_places.push((i, line, col));
            acc.resource_places.push((rline, rcol));
        }
    }
}

/// What no two targets may share, the resource whose capacity a target sets: the key that
/// names it in a `[[target]]` table, its identity (ECS cluster and service names, also when
/// written as ARNs; the Auto Scaling group name; the Aurora cluster identifier, which RDS
/// treats without case), and how to name it in a message.
pub fn resource_identity(r: &Resource) -> (&'static str, String, String) {
    // `arn:aws:ecs:region:account:cluster/shop` and `.../service/shop/web` name `shop`, `web`.
    let short = |s: &str| -> String {
        if s.starts_with("arn:") {
            s.rsplit('/').next().unwrap_or(s).to_string()
        } else {
            s.to_string()
        }
    };
    match r {
        Resource::EcsService { cluster, service } => {
            let (c, s) = (short(cluster), short(service));
            (
                "service",
                format!("ecs_service\u{0}{c}\u{0}{s}"),
                format!("ECS service `{s}` of cluster `{c}`"),
            )
        }
        Resource::Asg { name } => (
            "asg_name",
            format!("asg\u{0}{name}"),
            format!("Auto Scaling group `{name}`"),
        ),
        Resource::AuroraReaders { db_cluster, .. } => {
            let id = db_cluster.to_ascii_lowercase();
            (
                "db_cluster",
                format!("aurora_readers\u{0}{id}"),
                format!("the readers of Aurora cluster `{db_cluster}`"),
            )
        }
    }
}

/// The message and hint for target `t` setting a resource that target `first` (its
/// resource key at `place`, "file:line:column") already sets.
pub fn shared_resource(t: &Target, first: &str, place: &str) -> (String, String) {
    let (_, _, what) = resource_identity(&t.resource);
    (
        format!(
            "target `{}` scales {what}, which target `{first}` ({place}) already scales",
            t.name
        ),
        "two targets on one resource overwrite each other's capacity every tick; \
         put both targets' metrics and policies into one target (the largest proposal wins)"
            .into(),
    )
}

/// Deserializes one table. Each serde error is reported, its key removed and the rest read
/// again, so every bad key of the table is reported and the rules still run on the rest.
fn deserialize<T: DeserializeOwned>(
    ctx: &mut Ctx<'_>,
    v: &Spanned<DeValue<'_>>,
    path: &Path,
) -> Option<T> {
    let mut owned = v.clone();
    owned.get_mut().make_owned();
    for _ in 0..256 {
        match T::deserialize(ValueDeserializer::from(owned.clone())) {
            Ok(t) => return Some(t),
            Err(e) => {
                let at = e.span().map(|s| s.start);
                ctx.serde_err(path, e);
                let removed = at.and_then(|offset| remove_at(owned.get_mut(), offset));
                match removed {
                    Some(sub) => {
                        let mut full = path.clone();
                        full.0.extend(sub.0);
                        ctx.removed.push(full.dotted());
                    }
                    None => return None,
                }
            }
        }
    }
    None
}

fn validate_global(ctx: &mut Ctx<'_>, raw: &RawGlobal, path: &Path) -> Global {
    let mut g = Global {
        region: raw.region.clone(),
        dry_run: raw.dry_run.unwrap_or(false),
        ..Global::default()
    };
    let pi_path = path.at("poll_interval");
    g.poll_interval_secs = ctx.duration(&raw.poll_interval, &pi_path, 15);
    if raw.poll_interval.is_some() && !(5..=3600).contains(&g.poll_interval_secs) {
        ctx.err(
            &pi_path,
            format!("poll interval {}s is out of range", g.poll_interval_secs),
            Some("use 5s to 1h".into()),
        );
    }
    if let Some(addr) = &raw.http_listen {
        if addr != "off" && addr.parse::<SocketAddr>().is_err() {
            ctx.err(
                &path.at("http_listen"),
                format!("`{addr}` is not an address and port"),
                Some("e.g. \"0.0.0.0:8080\" or \"127.0.0.1:8080\" (an IP address, not a host name), or \"off\" to serve no HTTP".into()),
            );
        }
        g.http_listen = addr.clone();
    }
    if let Some(m) = &raw.metrics {
        if let Some(m) = ctx.choice(m, &["cloudwatch", "emf", "off"], &path.at("metrics")) {
            g.metrics = match m {
                "cloudwatch" => MetricsSink::Cloudwatch,
                "emf" => MetricsSink::Emf,
                _ => MetricsSink::Off,
            };
        }
    }
    if let Some(ns) = &raw.metrics_namespace {
        if ns.is_empty() || ns.len() > 255 || ns.starts_with("AWS/") {
            ctx.err(
                &path.at("metrics_namespace"),
                format!("`{ns}` cannot be a namespace of capstan's metrics"),
                Some("1 to 255 characters, not starting with AWS/".into()),
            );
        }
        g.metrics_namespace = ns.clone();
    }
    if let Some(sh) = &raw.shard {
        let sp = path.at("shard");
        match (sh.index, sh.count) {
            (Some(index), Some(count)) => {
                if !(1..=1024).contains(&count) {
                    ctx.err(
                        &sp.at("count"),
                        format!("{count} shards is out of range"),
                        Some("use 1 to 1024 shards".into()),
                    );
                } else if index >= count {
                    ctx.err(
                        &sp.at("index"),
                        format!("shard index {index} is not below the shard count {count}"),
                        Some(format!(
                            "shards are numbered from 0: use 0 to {} here",
                            count - 1
                        )),
                    );
                } else {
                    g.shard = Some(Shard { index, count });
                }
            }
            (None, _) => ctx.missing(&sp.at("index"), "this daemon's shard, from 0 to count - 1"),
            (_, None) => ctx.missing(
                &sp.at("count"),
                "how many shards the targets are split into",
            ),
        }
    }
    if let Some(limits) = &raw.rate_limits {
        let rp = path.at("rate_limits");
        for (api, rate) in limits {
            if !crate::ratelimit::DEFAULTS.iter().any(|(a, ..)| a == api) {
                let known: Vec<&str> = crate::ratelimit::DEFAULTS
                    .iter()
                    .map(|(a, ..)| *a)
                    .collect();
                ctx.err(
                    &rp.at(api.as_str()),
                    format!("capstan does not rate-limit `{api}`"),
                    Some(format!("limited APIs: {}", known.join(", "))),
                );
            } else if !(rate.is_finite() && *rate >= 0.1 && *rate <= 10_000.0) {
                ctx.err(
                    &rp.at(api.as_str()),
                    format!("{rate} calls per second is out of range"),
                    Some("use 0.1 to 10000 calls per second".into()),
                );
            } else {
                g.rate_limits.insert(api.clone(), *rate);
            }
        }
    }
    if let Some(v) = &raw.settled_refresh {
        let sp = path.at("settled_refresh");
        if v != "off" {
            let secs = ctx.duration(&raw.settled_refresh, &sp, 0);
            if secs != 0 && !(g.poll_interval_secs..=3600).contains(&secs) {
                ctx.err(
                    &sp,
                    format!(
                        "settled_refresh {secs}s is outside the poll interval ({}s) to 1h",
                        g.poll_interval_secs
                    ),
                    Some(
                        "a settled target is read at most once a tick: use the poll interval to 1h, or \"off\" to read every target every tick"
                            .into(),
                    ),
                );
            } else {
                g.settled_refresh_secs = secs;
            }
        }
    }
    if let Some(l) = &raw.lease {
        let lp = path.at("lease");
        g.lease.enabled = l.enabled.unwrap_or(false);
        if let Some(t) = &l.table {
            g.lease.table = t.clone();
        }
        if let Some(n) = &l.name {
            if n.is_empty() || n.contains('#') {
                // The table's keys are `lease#<name>` and `history#<name>#<target>`, and
                // the IAM policy grants `history#<name>#*`: a `#` in a name would let one
                // deployment reach another's items.
                ctx.err(
                    &lp.at("name"),
                    format!("lease name `{n}` is empty or holds `#`, which separates the parts of the lease table's keys"),
                    Some("name the deployment with letters, digits, `-`, `_` or `.`".into()),
                );
            }
            g.lease.name = n.clone();
        }
        g.lease.duration_secs = ctx.duration(&l.duration, &lp.at("duration"), 30);
        if g.lease.duration_secs < 2 * g.poll_interval_secs {
            ctx.err(
                &lp.at("duration"),
                format!(
                    "a lease of {}s is shorter than two poll intervals ({}s each)",
                    g.lease.duration_secs, g.poll_interval_secs
                ),
                Some(
                    "the leader renews the lease every tick; it must survive one missed renewal"
                        .into(),
                ),
            );
        }
    }
    g
}

const KINDS: &[&str] = &["ecs_service", "asg", "aurora_readers"];
const SOURCES: &[&str] = &[
    "ecs_cpu",
    "ecs_memory",
    "alb_requests_per_target",
    "aurora_reader_cpu",
    "aurora_reader_connections",
    "cloudwatch",
    "expression",
    "sqs",
];
const POLICY_TYPES: &[&str] = &["target_tracking", "step", "predictive"];

fn validate_target(ctx: &mut Ctx<'_>, raw: &RawTarget, path: &Path) -> Option<Target> {
    let before = ctx.diags.len();
    let name = match &raw.name {
        Some(n) if valid_name(n) => n.clone(),
        Some(n) => {
            ctx.err(
                &path.at("name"),
                format!("target name `{n}` is not valid"),
                Some("use letters, digits, `-` and `_` (1 to 128 characters)".into()),
            );
            n.clone()
        }
        None => {
            ctx.missing(&path.at("name"), "every target needs a unique name");
            String::new()
        }
    };

    let resource = resource(ctx, raw, path);

    let min = ctx.capacity(raw.min, &path.at("min"));
    let max = ctx.capacity(raw.max, &path.at("max"));
    if raw.min.is_none() {
        ctx.missing(
            &path.at("min"),
            "set the lowest capacity capstan may set, e.g. min = 1",
        );
    }
    if raw.max.is_none() {
        ctx.missing(
            &path.at("max"),
            "set the highest capacity capstan may set, e.g. max = 10",
        );
    }
    if let (Some(lo), Some(hi)) = (min, max) {
        if lo > hi {
            ctx.err(
                &path.at("min"),
                format!("min {lo} is greater than max {hi}"),
                Some("min must be <= max".into()),
            );
        }
        if hi == 0 {
            ctx.err(
                &path.at("max"),
                "max is 0",
                Some("max must be at least 1".into()),
            );
        }
    }
    let (min, max) = (min.unwrap_or(0), max.unwrap_or(0));

    if let Some(arn) = &raw.alb_target_group {
        if target_group_dimension(arn).is_none() {
            ctx.err(
                &path.at("alb_target_group"),
                format!("`{arn}` is not a target group ARN"),
                Some("arn:aws:elasticloadbalancing:REGION:ACCOUNT:targetgroup/NAME/ID".into()),
            );
        }
    }

    let metrics = metrics(ctx, raw, path, resource.as_ref());
    // Metrics declared but invalid were reported already; policies naming them are checked
    // for everything else.
    let declared: BTreeSet<String> = raw.metric.iter().filter_map(|m| m.name.clone()).collect();
    let policies = policies(ctx, raw, path, &metrics, &declared);
    let schedules = schedules(ctx, raw, path, max);
    let behavior = behavior(ctx, raw.behavior.as_ref(), &path.at("behavior"));

    let fallback = raw.fallback.as_ref().and_then(|f| {
        let fp = path.at("fallback");
        let after = match f.after_failures {
            Some(n) if (1..=10_000).contains(&n) => Some(n as u32),
            Some(n) => {
                ctx.err(
                    &fp.at("after_failures"),
                    format!("{n} is out of range"),
                    Some("use 1 to 10000 ticks".into()),
                );
                None
            }
            None => {
                ctx.missing(
                    &fp.at("after_failures"),
                    "how many consecutive failed ticks before the fallback applies, e.g. 3",
                );
                None
            }
        };
        let cap = ctx.capacity(f.capacity, &fp.at("capacity"));
        if f.capacity.is_none() {
            ctx.missing(
                &fp.at("capacity"),
                "the capacity to hold at least while metrics are missing",
            );
        }
        if let Some(c) = cap {
            if c < min || c > max {
                ctx.err(
                    &fp.at("capacity"),
                    format!("fallback capacity {c} is outside min {min} .. max {max}"),
                    Some("capstan never leaves the target's bounds, so the fallback must lie within them".into()),
                );
            }
        }
        Some(Fallback {
            after_failures: after?,
            capacity: cap?,
        })
    });

    if policies.is_empty() && schedules.is_empty() && ctx.diags.len() == before {
        ctx.err(
            &path.at("policy"),
            format!("target `{name}` has no policy and no schedule"),
            Some("add a [[target.policy]] (e.g. type = \"target_tracking\") or a [[target.schedule]]".into()),
        );
    }

    if ctx.diags.len() > before {
        return None;
    }
    let (mut metrics, mut policies, mut schedules) = (metrics, policies, schedules);
    metrics.shrink_to_fit();
    policies.shrink_to_fit();
    schedules.shrink_to_fit();
    Some(Target {
        name,
        resource: resource?,
        alb_target_group: raw.alb_target_group.clone(),
        min,
        max,
        takeover: raw.takeover.unwrap_or(false),
        metrics,
        policies,
        schedules,
        behavior,
        fallback,
    })
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 128
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn resource(ctx: &mut Ctx<'_>, raw: &RawTarget, path: &Path) -> Option<Resource> {
    let kp = path.at("kind");
    let Some(kind) = &raw.kind else {
        ctx.missing(&kp, format!("one of: {}", KINDS.join(", ")));
        return None;
    };
    let kind = ctx.choice(kind, KINDS, &kp)?;
    let need = |ctx: &mut Ctx<'_>, v: &Option<String>, key: &str, what: &str| -> Option<String> {
        match v {
            Some(s) if !s.trim().is_empty() => Some(s.clone()),
            _ => {
                ctx.missing(&path.at(key), format!("kind = \"{kind}\" needs {what}"));
                None
            }
        }
    };
    // Keys that belong to other kinds are an error: they would be silently ignored.
    let foreign: &[(&str, bool)] = &[
        ("cluster", raw.cluster.is_some() && kind != "ecs_service"),
        ("service", raw.service.is_some() && kind != "ecs_service"),
        ("asg_name", raw.asg_name.is_some() && kind != "asg"),
        (
            "db_cluster",
            raw.db_cluster.is_some() && kind != "aurora_readers",
        ),
        (
            "reader_prefix",
            raw.reader_prefix.is_some() && kind != "aurora_readers",
        ),
        (
            "reader_instance_class",
            raw.reader_instance_class.is_some() && kind != "aurora_readers",
        ),
    ];
    for (key, bad) in foreign {
        if *bad {
            ctx.err(
                &path.at(*key),
                format!("`{key}` does not apply to kind = \"{kind}\""),
                Some("remove it".into()),
            );
        }
    }
    match kind {
        "ecs_service" => {
            let cluster = need(ctx, &raw.cluster, "cluster", "the ECS cluster name");
            let service = need(ctx, &raw.service, "service", "the ECS service name");
            Some(Resource::EcsService {
                cluster: cluster?,
                service: service?,
            })
        }
        "asg" => Some(Resource::Asg {
            name: need(
                ctx,
                &raw.asg_name,
                "asg_name",
                "the Auto Scaling group name",
            )?,
        }),
        _ => {
            let db_cluster = need(
                ctx,
                &raw.db_cluster,
                "db_cluster",
                "the Aurora DB cluster identifier",
            )?;
            let reader_prefix = raw
                .reader_prefix
                .clone()
                .unwrap_or_else(|| format!("{db_cluster}-capstan"));
            if !reader_prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
                || reader_prefix.len() > 55
            {
                ctx.err(
                    &path.at("reader_prefix"),
                    format!("`{reader_prefix}` cannot prefix an RDS instance identifier"),
                    Some("letters, digits and hyphens, at most 55 characters".into()),
                );
            }
            Some(Resource::AuroraReaders {
                db_cluster,
                reader_prefix,
                instance_class: raw.reader_instance_class.clone(),
            })
        }
    }
}

/// `arn:...:targetgroup/name/id` -> `targetgroup/name/id`, the CloudWatch dimension value.
pub fn target_group_dimension(arn: &str) -> Option<String> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    if parts.len() != 6 || parts[0] != "arn" || parts[2] != "elasticloadbalancing" {
        return None;
    }
    let res = parts[5];
    let segs: Vec<&str> = res.split('/').collect();
    (segs.len() == 3 && segs[0] == "targetgroup" && !segs[1].is_empty() && !segs[2].is_empty())
        .then(|| res.to_string())
}

fn valid_metric_name(n: &str) -> bool {
    let mut chars = n.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && n.len() <= 64
}

/// The lowercase identifiers an expression reads (CloudWatch functions are uppercase).
pub fn expression_inputs(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = expr.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '"' || c == '\'' {
            // Skip string literals (e.g. in SEARCH).
            for (_, d) in chars.by_ref() {
                if d == c {
                    break;
                }
            }
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' {
            let mut end = i + c.len_utf8();
            while let Some(&(j, d)) = chars.peek() {
                if d.is_ascii_alphanumeric() || d == '_' {
                    end = j + d.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            let ident = &expr[i..end];
            if ident.starts_with(|c: char| c.is_ascii_lowercase())
                && !out.iter().any(|o| o == ident)
            {
                out.push(ident.to_string());
            }
        } else if c.is_ascii_digit() || c == '.' {
            // Numbers such as 1e3: consume the exponent letters with the digits.
            while let Some(&(_, d)) = chars.peek() {
                if d.is_ascii_alphanumeric() || d == '.' {
                    chars.next();
                } else {
                    break;
                }
            }
        }
    }
    out
}

/// A metric's `poll_every`, checked: a duration from 5s to 1h. Its place is kept for the
/// check against the poll interval ([`check_poll_every`]).
fn poll_every(ctx: &mut Ctx<'_>, m: &RawMetric, mp: &Path, sqs: bool) -> Option<u64> {
    if sqs || m.poll_every.is_none() {
        return None;
    }
    let path = mp.at("poll_every");
    let secs = ctx.duration(&m.poll_every, &path, 0);
    if secs == 0 {
        // Unparsable (already reported) or zero.
        if m.poll_every.as_deref().and_then(|s| parse_duration(s).ok()) == Some(0) {
            ctx.err(
                &path,
                "poll_every 0s is not a cadence",
                Some("use e.g. \"1m\", or remove poll_every to read the metric every tick".into()),
            );
        }
        return None;
    }
    if secs > 3600 {
        ctx.err(
            &path,
            format!("poll_every {secs}s is more than an hour"),
            Some("use 5s to 1h; a metric read less often than hourly cannot drive scaling".into()),
        );
        return None;
    }
    let (line, column) = ctx.line_col(&ctx.span(&path));
    ctx.poll_every.push(PollEveryPlace {
        secs,
        file: ctx.map.file.to_string(),
        line,
        column,
        key: path.dotted(),
    });
    Some(secs)
}

fn metrics(
    ctx: &mut Ctx<'_>,
    raw: &RawTarget,
    path: &Path,
    resource: Option<&Resource>,
) -> Vec<Metric> {
    let mut out: Vec<Metric> = Vec::new();
    let mut seen = BTreeSet::new();
    let mut expr_places = Vec::new();
    for (i, m) in raw.metric.iter().enumerate() {
        let mp = path.at("metric").at(i);
        let name = match &m.name {
            Some(n) if valid_metric_name(n) => n.clone(),
            Some(n) => {
                ctx.err(
                    &mp.at("name"),
                    format!("metric name `{n}` is not valid"),
                    Some("start with a lowercase letter; then letters, digits and `_` (CloudWatch query ids)".into()),
                );
                continue;
            }
            None => {
                ctx.missing(&mp.at("name"), "policies refer to metrics by name");
                continue;
            }
        };
        if !seen.insert(name.clone()) {
            ctx.err(
                &mp.at("name"),
                format!("duplicate metric name `{name}`"),
                Some("metric names must be unique within a target".into()),
            );
        }
        let Some(src) = &m.source else {
            ctx.missing(&mp.at("source"), format!("one of: {}", SOURCES.join(", ")));
            continue;
        };
        let Some(src) = ctx.choice(src, SOURCES, &mp.at("source")) else {
            continue;
        };
        let activation = ctx
            .finite(m.activation, &mp.at("activation"), false)
            .unwrap_or(0.0);
        if activation < 0.0 {
            ctx.err(
                &mp.at("activation"),
                format!("activation {activation} is negative"),
                Some("the target would always count as active and never scale to zero; use 0 or more".into()),
            );
        }

        // Which optional keys each source accepts; any other one set is an error.
        let allowed: &[&str] = match src {
            "cloudwatch" => &[
                "namespace",
                "metric_name",
                "dimensions",
                "statistic",
                "period",
                "stale_after",
                "end_offset",
                "poll_every",
            ],
            "expression" => &[
                "expression",
                "period",
                "stale_after",
                "end_offset",
                "poll_every",
            ],
            "sqs" => &["queue", "include_in_flight", "include_delayed"],
            _ => &[
                "statistic",
                "period",
                "stale_after",
                "end_offset",
                "poll_every",
            ],
        };
        let present = [
            ("namespace", m.namespace.is_some()),
            ("metric_name", m.metric_name.is_some()),
            ("dimensions", m.dimensions.is_some()),
            ("statistic", m.statistic.is_some()),
            ("expression", m.expression.is_some()),
            ("period", m.period.is_some()),
            ("stale_after", m.stale_after.is_some()),
            ("end_offset", m.end_offset.is_some()),
            ("poll_every", m.poll_every.is_some()),
            ("queue", m.queue.is_some()),
            ("include_in_flight", m.include_in_flight.is_some()),
            ("include_delayed", m.include_delayed.is_some()),
        ];
        for (key, set) in present {
            if set && !allowed.contains(&key) {
                let hint = if key == "poll_every" {
                    "a queue's depth is read every tick (GetQueueAttributes costs $0.40 per million requests, not per metric); poll_every is for CloudWatch metrics".to_string()
                } else {
                    format!("keys for this source: {}", allowed.join(", "))
                };
                ctx.err(
                    &mp.at(key),
                    format!("`{key}` does not apply to source = \"{src}\""),
                    Some(hint),
                );
            }
        }

        let period = ctx.duration(&m.period, &mp.at("period"), 60);
        if m.period.is_some()
            && !(period == 10 || period == 30 || (period >= 60 && period % 60 == 0))
        {
            ctx.err(
                &mp.at("period"),
                format!("CloudWatch has no {period}s period"),
                Some("use 10s or 30s (high resolution) or a multiple of 60s".into()),
            );
        }
        let poll_every = poll_every(ctx, m, &mp, src == "sqs");
        let stale = ctx.duration(
            &m.stale_after,
            &mp.at("stale_after"),
            3 * period + poll_every.unwrap_or(0),
        );
        if let (Some(every), Some(_)) = (poll_every, &m.stale_after) {
            if stale < every + period {
                ctx.err(
                    &mp.at("stale_after"),
                    format!(
                        "stale_after {stale}s is shorter than poll_every {every}s plus the period {period}s"
                    ),
                    Some(format!(
                        "a reading reused until the next read would count as missing before it; use at least {}s, or leave stale_after out (3 periods plus poll_every: {}s)",
                        every + period,
                        3 * period + every
                    )),
                );
            }
        }
        let offset = ctx.duration(&m.end_offset, &mp.at("end_offset"), 0);
        if offset > 3600 {
            ctx.err(
                &mp.at("end_offset"),
                format!("end_offset {offset}s is more than an hour"),
                Some("a late metric arrives within minutes; use e.g. \"1m\"".into()),
            );
        }
        if stale < period && m.stale_after.is_some() {
            ctx.err(
                &mp.at("stale_after"),
                format!("stale_after {stale}s is shorter than the period {period}s"),
                Some("every datapoint would count as stale".into()),
            );
        }
        let statistic = |ctx: &mut Ctx<'_>, default: &str| -> String {
            let s = m.statistic.clone().unwrap_or_else(|| default.to_string());
            let ok = ["Average", "Sum", "Maximum", "Minimum", "SampleCount"].contains(&s.as_str())
                || s.strip_prefix('p')
                    .and_then(|p| p.parse::<f64>().ok())
                    .is_some_and(|p| p > 0.0 && p < 100.0);
            if !ok {
                ctx.err(
                    &mp.at("statistic"),
                    format!("unknown statistic `{s}`"),
                    Some(
                        "Average, Sum, Maximum, Minimum, SampleCount or a percentile like p99"
                            .into(),
                    ),
                );
            }
            s
        };
        let cw = |namespace: &str,
                  metric_name: &str,
                  dims: Vec<(&str, String)>,
                  statistic: String| MetricSource::Cloudwatch {
            namespace: namespace.into(),
            metric_name: metric_name.into(),
            dimensions: dims.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            statistic,
            period_secs: period,
            stale_after_secs: stale,
            end_offset_secs: offset,
        };
        let kind_mismatch = |ctx: &mut Ctx<'_>, want: &str| {
            ctx.err(
                &mp.at("source"),
                format!("source `{src}` needs a target of kind = \"{want}\""),
                Some(
                    "use source = \"cloudwatch\" with explicit dimensions for other resources"
                        .into(),
                ),
            );
        };
        let source = match (src, resource) {
            ("ecs_cpu" | "ecs_memory", Some(Resource::EcsService { cluster, service })) => {
                let metric = if src == "ecs_cpu" {
                    "CPUUtilization"
                } else {
                    "MemoryUtilization"
                };
                let cluster = cluster.rsplit('/').next().unwrap_or(cluster).to_string();
                let st = statistic(ctx, "Average");
                cw(
                    "AWS/ECS",
                    metric,
                    vec![("ClusterName", cluster), ("ServiceName", service.clone())],
                    st,
                )
            }
            ("ecs_cpu" | "ecs_memory", Some(_)) => {
                kind_mismatch(ctx, "ecs_service");
                continue;
            }
            (
                "aurora_reader_cpu" | "aurora_reader_connections",
                Some(Resource::AuroraReaders { db_cluster, .. }),
            ) => {
                let metric = if src == "aurora_reader_cpu" {
                    "CPUUtilization"
                } else {
                    "DatabaseConnections"
                };
                let st = statistic(ctx, "Average");
                cw(
                    "AWS/RDS",
                    metric,
                    vec![
                        ("DBClusterIdentifier", db_cluster.clone()),
                        ("Role", "READER".into()),
                    ],
                    st,
                )
            }
            ("aurora_reader_cpu" | "aurora_reader_connections", Some(_)) => {
                kind_mismatch(ctx, "aurora_readers");
                continue;
            }
            ("alb_requests_per_target", _) => {
                let Some(tg) = raw
                    .alb_target_group
                    .as_deref()
                    .and_then(target_group_dimension)
                else {
                    ctx.err(
                        &mp.at("source"),
                        "alb_requests_per_target needs the target's `alb_target_group`",
                        Some("set alb_target_group = \"arn:aws:elasticloadbalancing:...:targetgroup/NAME/ID\" on the target".into()),
                    );
                    continue;
                };
                let st = statistic(ctx, "Sum");
                cw(
                    "AWS/ApplicationELB",
                    "RequestCountPerTarget",
                    vec![("TargetGroup", tg)],
                    st,
                )
            }
            ("cloudwatch", _) => {
                let ns = m.namespace.clone();
                let mn = m.metric_name.clone();
                if ns.is_none() {
                    ctx.missing(
                        &mp.at("namespace"),
                        "the CloudWatch namespace, e.g. \"AWS/ECS\" or \"Shop/Checkout\"",
                    );
                }
                if mn.is_none() {
                    ctx.missing(&mp.at("metric_name"), "the CloudWatch metric name");
                }
                let st = statistic(ctx, "Average");
                let (Some(ns), Some(mn)) = (ns, mn) else {
                    continue;
                };
                MetricSource::Cloudwatch {
                    namespace: ns,
                    metric_name: mn,
                    dimensions: m.dimensions.clone().unwrap_or_default(),
                    statistic: st,
                    period_secs: period,
                    stale_after_secs: stale,
                    end_offset_secs: offset,
                }
            }
            ("expression", _) => {
                let Some(expr) = m.expression.clone().filter(|e| !e.trim().is_empty()) else {
                    ctx.missing(&mp.at("expression"), "a CloudWatch metric-math expression over this target's metrics, e.g. \"rps / healthy\"");
                    continue;
                };
                let inputs = expression_inputs(&expr);
                expr_places.push((out.len(), mp.clone()));
                MetricSource::Expression {
                    expression: expr,
                    inputs,
                    period_secs: period,
                    stale_after_secs: stale,
                    end_offset_secs: offset,
                }
            }
            ("sqs", _) => {
                let Some(q) = m.queue.clone().filter(|q| !q.trim().is_empty()) else {
                    ctx.missing(&mp.at("queue"), "the SQS queue name or URL");
                    continue;
                };
                MetricSource::Sqs {
                    queue: q,
                    include_in_flight: m.include_in_flight.unwrap_or(true),
                    include_delayed: m.include_delayed.unwrap_or(false),
                }
            }
            // The resource itself failed validation; that error is already reported.
            (_, None) => continue,
            _ => continue,
        };
        out.push(Metric {
            name: name.into(),
            source,
            activation,
            poll_every_secs: poll_every,
        });
    }
    // Expression references must resolve to CloudWatch metrics or expressions of this
    // target, without cycles.
    for (idx, mp) in expr_places {
        let MetricSource::Expression { inputs, .. } = &out[idx].source else {
            continue;
        };
        let me = out[idx].name.clone();
        if inputs.is_empty() {
            ctx.err(
                &mp.at("expression"),
                "the expression reads no metric of this target",
                Some("refer to other metrics of the target by name".into()),
            );
        }
        for input in inputs.clone() {
            match out.iter().find(|m| *m.name == *input) {
                None => {
                    let hint = match closest(&input, out.iter().map(|m| &*m.name)) {
                        Some(c) => format!("did you mean `{c}`?"),
                        None => "define it as a [[target.metric]] of this target".into(),
                    };
                    ctx.err(
                        &mp.at("expression"),
                        format!(
                            "the expression reads `{input}`, which is not a metric of this target"
                        ),
                        Some(hint),
                    );
                }
                Some(m) if matches!(m.source, MetricSource::Sqs { .. }) => {
                    ctx.err(
                        &mp.at("expression"),
                        format!("the expression reads `{input}`, an SQS metric"),
                        Some("metric math only combines CloudWatch metrics".into()),
                    );
                }
                Some(_) if *input == *me => {
                    ctx.err(
                        &mp.at("expression"),
                        "the expression reads itself",
                        Some(format!(
                            "an expression combines other metrics of the target; `{me}` cannot be one of its own inputs"
                        )),
                    );
                }
                Some(_) => {}
            }
        }
        if reaches(&out, &me, &me, &mut BTreeSet::new()) {
            ctx.err(
                &mp.at("expression"),
                format!("expression `{me}` depends on itself through other expressions"),
                Some("break the cycle".into()),
            );
        }
    }
    out
}

/// Whether `from`'s expression inputs reach `goal` (cycle detection).
fn reaches(metrics: &[Metric], from: &str, goal: &str, seen: &mut BTreeSet<String>) -> bool {
    let Some(m) = metrics.iter().find(|m| *m.name == *from) else {
        return false;
    };
    let MetricSource::Expression { inputs, .. } = &m.source else {
        return false;
    };
    for i in inputs {
        if i == goal && from != goal {
            return true;
        }
        if i != from && seen.insert(i.clone()) && reaches(metrics, i, goal, seen) {
            return true;
        }
    }
    false
}

fn policies(
    ctx: &mut Ctx<'_>,
    raw: &RawTarget,
    path: &Path,
    metrics: &[Metric],
    declared: &BTreeSet<String>,
) -> Vec<Policy> {
    let mut out = Vec::new();
    let mut names = BTreeSet::new();
    let mut predictive = 0;
    for (i, p) in raw.policy.iter().enumerate() {
        let pp = path.at("policy").at(i);
        let Some(kind) = &p.kind else {
            ctx.missing(
                &pp.at("type"),
                format!("one of: {}", POLICY_TYPES.join(", ")),
            );
            continue;
        };
        let Some(kind) = ctx.choice(kind, POLICY_TYPES, &pp.at("type")) else {
            continue;
        };
        let Some(metric_name) = &p.metric else {
            ctx.missing(
                &pp.at("metric"),
                "the name of one of this target's [[target.metric]] entries",
            );
            continue;
        };
        let metric_index = metrics.iter().position(|m| *m.name == **metric_name);
        let metric = metric_index.map(|i| &metrics[i]);
        if metric.is_none() && !declared.contains(metric_name) {
            let hint = match closest(metric_name, metrics.iter().map(|m| &*m.name)) {
                Some(c) => format!("did you mean `{c}`?"),
                None if metrics.is_empty() => "this target has no valid [[target.metric]]".into(),
                None => format!(
                    "metrics of this target: {}",
                    metrics
                        .iter()
                        .map(|m| &*m.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            ctx.err(
                &pp.at("metric"),
                format!("unknown metric `{metric_name}`"),
                Some(hint),
            );
        }
        let name = p
            .name
            .clone()
            .unwrap_or_else(|| format!("{kind}:{metric_name}"));
        if !names.insert(name.clone()) {
            ctx.err(
                &pp.at("name"),
                format!("duplicate policy name `{name}`"),
                Some("give each policy a distinct `name`".into()),
            );
        }
        // Keys of other policy types would be silently ignored: report them.
        let allowed: &[&str] = match kind {
            "target_tracking" => &[
                "target_value",
                "target_per_unit",
                "tolerance",
                "tolerance_up",
                "tolerance_down",
            ],
            "step" => &[
                "threshold",
                "comparison",
                "breach_for",
                "adjustment_type",
                "min_adjustment_magnitude",
                "steps",
            ],
            _ => &[
                "target_per_unit",
                "mode",
                "schedule_ahead",
                "max_capacity_breach",
                "refresh",
                "max_error",
            ],
        };
        let present = [
            ("target_value", p.target_value.is_some()),
            ("target_per_unit", p.target_per_unit.is_some()),
            ("tolerance", p.tolerance.is_some()),
            ("tolerance_up", p.tolerance_up.is_some()),
            ("tolerance_down", p.tolerance_down.is_some()),
            ("threshold", p.threshold.is_some()),
            ("comparison", p.comparison.is_some()),
            ("breach_for", p.breach_for.is_some()),
            ("adjustment_type", p.adjustment_type.is_some()),
            (
                "min_adjustment_magnitude",
                p.min_adjustment_magnitude.is_some(),
            ),
            ("steps", p.steps.is_some()),
            ("mode", p.mode.is_some()),
            ("schedule_ahead", p.schedule_ahead.is_some()),
            ("max_capacity_breach", p.max_capacity_breach.is_some()),
            ("refresh", p.refresh.is_some()),
            ("max_error", p.max_error.is_some()),
        ];
        for (key, set) in present {
            if set && !allowed.contains(&key) {
                ctx.err(
                    &pp.at(key),
                    format!("`{key}` does not apply to type = \"{kind}\""),
                    Some(format!("keys for this type: {}", allowed.join(", "))),
                );
            }
        }
        let is_sqs = metric.is_some_and(|m| matches!(m.source, MetricSource::Sqs { .. }));
        let kind = match kind {
            "target_tracking" => {
                let target = match (p.target_value, p.target_per_unit) {
                    (Some(_), Some(_)) => {
                        ctx.err(&pp.at("target_per_unit"), "set either target_value or target_per_unit, not both", Some("target_value for per-unit averages (CPU %), target_per_unit for totals (queue backlog)".into()));
                        None
                    }
                    (Some(v), None) => {
                        if is_sqs {
                            ctx.err(
                                &pp.at("target_value"),
                                "an SQS backlog is a total, not a per-unit average",
                                Some(format!(
                                    "use target_per_unit = {v} (messages one unit works through)"
                                )),
                            );
                        }
                        ctx.finite(Some(v), &pp.at("target_value"), true)
                            .map(TrackingTarget::Average)
                    }
                    (None, Some(v)) => ctx
                        .finite(Some(v), &pp.at("target_per_unit"), true)
                        .map(TrackingTarget::PerUnit),
                    (None, None) => {
                        ctx.missing(&pp.at("target_value"), "set target_value (per-unit average, e.g. 70 for CPU %) or target_per_unit (a total divided per unit, e.g. queue backlog)");
                        None
                    }
                };
                let mut tol = |key: &str, v: Option<f64>| -> f64 {
                    match v {
                        Some(t) if (0.0..1.0).contains(&t) => t,
                        Some(t) => {
                            ctx.err(
                                &pp.at(key),
                                format!("tolerance {t} is out of range"),
                                Some("use a fraction from 0 to below 1, e.g. 0.1 for 10%".into()),
                            );
                            0.1
                        }
                        None => 0.1,
                    }
                };
                let both = tol("tolerance", p.tolerance);
                let up = if p.tolerance_up.is_some() {
                    tol("tolerance_up", p.tolerance_up)
                } else {
                    both
                };
                let down = if p.tolerance_down.is_some() {
                    tol("tolerance_down", p.tolerance_down)
                } else {
                    both
                };
                let Some(target) = target else { continue };
                PolicyKind::TargetTracking {
                    target,
                    tolerance_up: up,
                    tolerance_down: down,
                }
            }
            "step" => match step_policy(ctx, p, &pp) {
                Some(s) => PolicyKind::Step(s),
                None => continue,
            },
            _ => {
                predictive += 1;
                if predictive > 1 {
                    ctx.err(
                        &pp.at("type"),
                        "a target has at most one predictive policy",
                        Some(
                            "keep one; it forecasts the load of its metric for the whole target"
                                .into(),
                        ),
                    );
                }
                if let Some(m) = metric {
                    if let Some((why, hint)) = unforecastable(raw, metrics, m) {
                        ctx.err(&pp.at("metric"), why, Some(hint));
                    }
                }
                match predictive_policy(ctx, p, &pp) {
                    Some(mut s) => {
                        s.unit = crate::sources::history::unit(metrics, metric_name).into();
                        PolicyKind::Predictive(s)
                    }
                    None => continue,
                }
            }
        };
        if let Some(metric_index) = metric_index {
            out.push(Policy {
                name: name.into(),
                // The metric's own name, shared.
                metric: Arc::clone(&metrics[metric_index].name),
                metric_index,
                kind,
            });
        }
    }
    out
}

fn step_policy(ctx: &mut Ctx<'_>, p: &RawPolicy, pp: &Path) -> Option<StepPolicy> {
    let threshold = ctx.finite(p.threshold, &pp.at("threshold"), false);
    if p.threshold.is_none() {
        ctx.missing(
            &pp.at("threshold"),
            "the alarm threshold the steps are relative to",
        );
    }
    let comparison = match p.comparison.as_deref() {
        None => {
            ctx.missing(
                &pp.at("comparison"),
                "\">=\" or \">\" for a high alarm, \"<=\" or \"<\" for a low one",
            );
            None
        }
        Some(c) => ctx
            .choice(c, &[">=", ">", "<=", "<"], &pp.at("comparison"))
            .map(|c| match c {
                ">=" => Comparison::Ge,
                ">" => Comparison::Gt,
                "<=" => Comparison::Le,
                _ => Comparison::Lt,
            }),
    };
    let adjustment = match p.adjustment_type.as_deref() {
        None => {
            ctx.missing(
                &pp.at("adjustment_type"),
                "change_in_capacity, percent_change_in_capacity or exact_capacity",
            );
            None
        }
        Some(a) => ctx
            .choice(
                a,
                &[
                    "change_in_capacity",
                    "percent_change_in_capacity",
                    "exact_capacity",
                ],
                &pp.at("adjustment_type"),
            )
            .map(|a| match a {
                "change_in_capacity" => AdjustmentType::ChangeInCapacity,
                "percent_change_in_capacity" => AdjustmentType::PercentChangeInCapacity,
                _ => AdjustmentType::ExactCapacity,
            }),
    };
    let breach_for_secs = ctx.duration(&p.breach_for, &pp.at("breach_for"), 0);
    let min_adjustment_magnitude = match p.min_adjustment_magnitude {
        None => None,
        Some(m) if adjustment != Some(AdjustmentType::PercentChangeInCapacity) => {
            ctx.err(
                &pp.at("min_adjustment_magnitude"),
                "min_adjustment_magnitude applies only to percent_change_in_capacity",
                Some(
                    "set adjustment_type = \"percent_change_in_capacity\" or remove min_adjustment_magnitude"
                        .into(),
                ),
            );
            let _ = m;
            None
        }
        Some(m) if (1..=MAX_CAPACITY).contains(&m) => Some(m as u32),
        Some(m) => {
            ctx.err(
                &pp.at("min_adjustment_magnitude"),
                format!("{m} is out of range"),
                Some("use 1 or more".into()),
            );
            None
        }
    };
    let sp = pp.at("steps");
    let raw_steps = match &p.steps {
        Some(s) if !s.is_empty() => s.clone(),
        Some(_) => {
            ctx.err(&sp, "`steps` is empty", Some("steps = [{ lower = 0, upper = 10, adjustment = 1 }, { lower = 10, adjustment = 3 }]".into()));
            return None;
        }
        None => {
            ctx.missing(&sp, "steps = [{ lower = 0, upper = 10, adjustment = 1 }, { lower = 10, adjustment = 3 }]");
            return None;
        }
    };
    let mut steps = Vec::new();
    let mut ok = true;
    for (i, s) in raw_steps.iter().enumerate() {
        let stp = sp.at(i);
        let Some(adj) = s.adjustment else {
            ctx.missing(
                &stp.at("adjustment"),
                "units, percent or capacity per adjustment_type",
            );
            ok = false;
            continue;
        };
        if adj.abs() > MAX_CAPACITY {
            ctx.err(
                &stp.at("adjustment"),
                format!("adjustment {adj} is too large"),
                None,
            );
            ok = false;
        }
        if adjustment == Some(AdjustmentType::ExactCapacity) && adj < 0 {
            ctx.err(
                &stp.at("adjustment"),
                "an exact capacity cannot be negative",
                None,
            );
            ok = false;
        }
        for (key, v) in [("lower", s.lower), ("upper", s.upper)] {
            if v.is_some_and(|v| !v.is_finite()) {
                ctx.err(
                    &stp.at(key),
                    "bound must be finite; leave it out for infinity",
                    None,
                );
                ok = false;
            }
        }
        if let (Some(l), Some(u)) = (s.lower, s.upper) {
            if l >= u {
                ctx.err(
                    &stp.at("lower"),
                    format!("lower bound {l} is not below upper bound {u}"),
                    None,
                );
                ok = false;
            }
        }
        steps.push(Step {
            lower: s.lower,
            upper: s.upper,
            adjustment: adj,
        });
    }
    if !ok {
        return None;
    }
    // AWS rules: sorted, no overlap, no gap; the breaching side fully covered.
    let mut order: Vec<usize> = (0..steps.len()).collect();
    order.sort_by(|a, b| {
        steps[*a]
            .lower
            .unwrap_or(f64::NEG_INFINITY)
            .total_cmp(&steps[*b].lower.unwrap_or(f64::NEG_INFINITY))
    });
    for w in order.windows(2) {
        let (a, b) = (steps[w[0]], steps[w[1]]);
        if a.upper != b.lower {
            let hint = "each step's upper bound must equal the next step's lower bound (no gaps, no overlaps)";
            ctx.err(
                &sp.at(w[1]).at("lower"),
                format!(
                    "step {} ends at {} but step {} starts at {}",
                    w[0],
                    a.upper.map_or("+infinity".to_string(), |x| x.to_string()),
                    w[1],
                    b.lower.map_or("-infinity".to_string(), |x| x.to_string())
                ),
                Some(hint.into()),
            );
            return None;
        }
    }
    let first = steps[order[0]];
    let last = steps[*order.last().unwrap()];
    if let Some(cmp) = comparison {
        let covered = if cmp.is_upper() {
            first.lower.is_none_or(|l| l <= 0.0) && last.upper.is_none()
        } else {
            first.lower.is_none() && last.upper.is_none_or(|u| u >= 0.0)
        };
        if !covered {
            let hint = if cmp.is_upper() {
                "for a high alarm, the steps must cover 0 (the threshold) up to an open upper bound"
            } else {
                "for a low alarm, the steps must cover an open lower bound up to 0 (the threshold)"
            };
            ctx.err(
                &sp,
                "the steps do not cover every value that breaches the threshold",
                Some(hint.into()),
            );
        }
    }
    steps.sort_by(|a, b| {
        a.lower
            .unwrap_or(f64::NEG_INFINITY)
            .total_cmp(&b.lower.unwrap_or(f64::NEG_INFINITY))
    });
    Some(StepPolicy {
        threshold: threshold?,
        comparison: comparison?,
        breach_for_secs,
        adjustment: adjustment?,
        min_adjustment_magnitude,
        steps,
    })
}

/// CloudWatch metrics whose value is per unit (per task, instance, target or reader):
/// their forecast divided by a per-unit load means nothing.
const PER_UNIT_METRICS: &[&str] = &[
    "CPUUtilization",
    "MemoryUtilization",
    "CPUReservation",
    "MemoryReservation",
    "RequestCountPerTarget",
];

/// Why a predictive policy cannot forecast `m`, with a hint naming the metric to use
/// instead: a per-unit metric or an average (directly or as an input of its expression),
/// or a high-resolution period (CloudWatch keeps those three hours; the forecaster needs
/// days). `None` when it can.
fn unforecastable(raw: &RawTarget, metrics: &[Metric], m: &Metric) -> Option<(String, String)> {
    let period = match &m.source {
        MetricSource::Cloudwatch { period_secs, .. }
        | MetricSource::Expression { period_secs, .. } => *period_secs,
        MetricSource::Sqs { .. } => 60,
    };
    if period < 60 {
        return Some((
            format!("`{}` has a {period}s period: CloudWatch keeps high-resolution data 3 hours, the forecaster learns from days", m.name),
            "give the forecast's metric period = \"60s\" (a Sum per minute divided by 60 in an expression gives the same rate)".into(),
        ));
    }
    let mut chain = Vec::new();
    let what = per_unit_input(metrics, m, &mut chain)?;
    let (leaf, why) = match chain.as_slice() {
        [] | [_] => (&*m.name, format!("`{}` is {what}", m.name)),
        [.., leaf] => (
            &**leaf,
            format!(
                "{}, which is {what}",
                chain
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(" reads ")
            ),
        ),
    };
    let total = if raw.kind.as_deref() == Some("aurora_readers") {
        "the total load on the readers, e.g. the requests of the service in front (AWS/ApplicationELB `RequestCount`, statistic = \"Sum\", divided by 60 in an expression)"
    } else {
        "the total request rate: AWS/ApplicationELB `RequestCount` with statistic = \"Sum\", period = \"60s\" and the TargetGroup and LoadBalancer dimensions, divided by 60 in an expression (requests/s); for SQS workers the queue's `NumberOfMessagesSent` (Sum), or the sqs metric itself"
    };
    Some((
        format!(
            "a predictive policy forecasts a total load and divides it by target_per_unit: {why}"
        ),
        format!("forecast {total}; keep `{leaf}` for target tracking"),
    ))
}

/// What makes `m` (or an input of its expression) a per-unit value or an average; `chain`
/// gets the metrics from `m` to that input.
fn per_unit_input(metrics: &[Metric], m: &Metric, chain: &mut Vec<Arc<str>>) -> Option<String> {
    chain.push(Arc::clone(&m.name));
    let found = match &m.source {
        MetricSource::Sqs { .. } => None,
        MetricSource::Cloudwatch {
            metric_name,
            statistic,
            ..
        } => {
            if PER_UNIT_METRICS.contains(&metric_name.as_str()) {
                Some(format!("{metric_name} ({statistic}), a per-unit value"))
            } else if statistic != "Sum" && statistic != "SampleCount" {
                Some(format!("the {statistic} of {metric_name}, not a total"))
            } else {
                None
            }
        }
        MetricSource::Expression { inputs, .. } if chain.len() < 8 => inputs.iter().find_map(|i| {
            let input = metrics.iter().find(|x| *x.name == **i)?;
            per_unit_input(metrics, input, chain)
        }),
        MetricSource::Expression { .. } => None,
    };
    if found.is_none() {
        chain.pop();
    }
    found
}

fn predictive_policy(ctx: &mut Ctx<'_>, p: &RawPolicy, pp: &Path) -> Option<PredictivePolicy> {
    let per_unit = ctx.finite(p.target_per_unit, &pp.at("target_per_unit"), true);
    if p.target_per_unit.is_none() {
        ctx.missing(
            &pp.at("target_per_unit"),
            "the load one unit serves at target, e.g. 100 (requests/s per task)",
        );
    }
    let mode = match p.mode.as_deref() {
        None => Some(PredictiveMode::ForecastOnly),
        Some(m) => ctx
            .choice(m, &["forecast_only", "forecast_and_scale"], &pp.at("mode"))
            .map(|m| {
                if m == "forecast_only" {
                    PredictiveMode::ForecastOnly
                } else {
                    PredictiveMode::ForecastAndScale
                }
            }),
    };
    let schedule_ahead_secs = ctx.duration(&p.schedule_ahead, &pp.at("schedule_ahead"), 300);
    if schedule_ahead_secs > 3600 {
        ctx.err(
            &pp.at("schedule_ahead"),
            "schedule_ahead is at most 1h",
            Some("AWS caps SchedulingBufferTime at 3600s".into()),
        );
    }
    let refresh_secs = ctx.duration(&p.refresh, &pp.at("refresh"), 3600);
    if p.refresh.is_some() && !(300..=86_400).contains(&refresh_secs) {
        ctx.err(
            &pp.at("refresh"),
            format!("refresh {refresh_secs}s is out of range"),
            Some("use 5m to 1d".into()),
        );
    }
    let max_error = match p.max_error {
        None => 0.3,
        Some(e) if e.is_finite() && e > 0.0 && e <= 10.0 => e,
        Some(e) => {
            ctx.err(
                &pp.at("max_error"),
                format!("max_error {e} is out of range"),
                Some("a fraction such as 0.3 (30% error)".into()),
            );
            0.3
        }
    };
    let breach = match &p.max_capacity_breach {
        None => Some(MaxCapacityBreach::Honor),
        Some(RawBreach::Word(w)) if w == "honor" => Some(MaxCapacityBreach::Honor),
        Some(RawBreach::Word(w)) => {
            ctx.err(
                &pp.at("max_capacity_breach"),
                format!("unknown value `{w}`"),
                Some("\"honor\" or { increase_by_percent = 10 }".into()),
            );
            None
        }
        Some(RawBreach::Increase {
            increase_by_percent,
        }) => {
            if increase_by_percent.is_finite()
                && *increase_by_percent > 0.0
                && *increase_by_percent <= 1000.0
            {
                Some(MaxCapacityBreach::IncreaseByPercent(*increase_by_percent))
            } else {
                ctx.err(
                    &pp.at("max_capacity_breach"),
                    format!("increase_by_percent {increase_by_percent} is out of range"),
                    Some("use 1 to 1000".into()),
                );
                None
            }
        }
    };
    Some(PredictivePolicy {
        per_unit: per_unit?,
        // Set by the caller, which knows the target's metrics.
        unit: Arc::from(""),
        mode: mode?,
        schedule_ahead_secs,
        breach: breach?,
        refresh_secs,
        max_error,
    })
}

fn parse_time(ctx: &mut Ctx<'_>, v: &RawTime, path: &Path) -> Option<DateTime<Utc>> {
    let text = v.as_text();
    match DateTime::parse_from_rfc3339(&text) {
        Ok(t) => Some(t.with_timezone(&Utc)),
        Err(e) => {
            ctx.err(
                path,
                format!("`{text}` is not an RFC 3339 time with offset: {e}"),
                Some("e.g. \"2026-11-27T00:00:00-05:00\"".into()),
            );
            None
        }
    }
}

fn schedules(ctx: &mut Ctx<'_>, raw: &RawTarget, path: &Path, target_max: u32) -> Vec<Schedule> {
    let mut out = Vec::new();
    let mut names = BTreeSet::new();
    for (i, s) in raw.schedule.iter().enumerate() {
        let sp = path.at("schedule").at(i);
        let before = ctx.diags.len();
        let name = s.name.clone().unwrap_or_else(|| format!("schedule[{i}]"));
        if !names.insert(name.clone()) {
            ctx.err(
                &sp.at("name"),
                format!("duplicate schedule name `{name}`"),
                None,
            );
        }
        let once = s.start.is_some() || s.end.is_some();
        let recurring = s.cron.is_some() || s.duration.is_some() || s.timezone.is_some();
        let when = if once && recurring {
            ctx.err(&sp, "a schedule is either a one-off window (start, end) or recurring (cron, duration, timezone), not both", Some("split it into two [[target.schedule]] entries".into()));
            None
        } else if once {
            let start = s
                .start
                .as_ref()
                .and_then(|t| parse_time(ctx, t, &sp.at("start")));
            let end = s
                .end
                .as_ref()
                .and_then(|t| parse_time(ctx, t, &sp.at("end")));
            if s.start.is_none() {
                ctx.missing(
                    &sp.at("start"),
                    "when the window opens, e.g. \"2026-11-27T00:00:00-05:00\"",
                );
            }
            if s.end.is_none() {
                ctx.missing(&sp.at("end"), "when the window closes");
            }
            match (start, end) {
                (Some(a), Some(b)) if a < b => Some(ScheduleWhen::Once { start: a, end: b }),
                (Some(_), Some(_)) => {
                    ctx.err(
                        &sp.at("end"),
                        "the window ends before it starts",
                        Some("`end` must be later than `start`".into()),
                    );
                    None
                }
                _ => None,
            }
        } else if recurring {
            let tz = match s.timezone.as_deref() {
                None => Some(chrono_tz::Tz::UTC),
                Some(z) => {
                    match z.parse::<chrono_tz::Tz>() {
                        Ok(tz) => Some(tz),
                        Err(_) => {
                            let hint = closest(z, chrono_tz::TZ_VARIANTS.iter().map(|t| t.name()))
                            .map(|c| format!("did you mean `{c}`?"))
                            .unwrap_or_else(|| "use an IANA name such as \"Europe/Berlin\" or \"America/New_York\"".into());
                            ctx.err(
                                &sp.at("timezone"),
                                format!("unknown time zone `{z}`"),
                                Some(hint),
                            );
                            None
                        }
                    }
                }
            };
            let cron = match s.cron.as_deref() {
                None => {
                    ctx.missing(
                        &sp.at("cron"),
                        "a 5-field cron expression such as \"0 8 * * MON-FRI\"",
                    );
                    None
                }
                Some(c) => match parse_cron(c) {
                    Ok(cron) => Some(cron),
                    Err(e) => {
                        ctx.err(&sp.at("cron"), format!("invalid cron expression `{c}`: {e}"), Some("minute hour day-of-month month day-of-week, e.g. \"0 8 * * MON-FRI\"".into()));
                        None
                    }
                },
            };
            let duration_secs = ctx.duration(&s.duration, &sp.at("duration"), 0);
            if s.duration.is_none() {
                ctx.missing(
                    &sp.at("duration"),
                    "how long each window lasts, e.g. \"10h\"",
                );
            } else if duration_secs == 0 {
                ctx.err(
                    &sp.at("duration"),
                    "a window of 0s never applies",
                    Some("give how long each window lasts, e.g. \"10h\"".into()),
                );
            }
            match (cron, tz) {
                (Some(cron), Some(timezone)) if duration_secs > 0 => Some(ScheduleWhen::cron(
                    s.cron.as_deref().unwrap_or_default(),
                    timezone,
                    duration_secs,
                    cron,
                )),
                _ => None,
            }
        } else {
            ctx.err(
                &sp,
                "the schedule says neither when (start, end) nor how often (cron, duration)",
                Some("add start and end, or cron and duration".into()),
            );
            None
        };
        let min = ctx.capacity(s.min, &sp.at("min"));
        let max = ctx.capacity(s.max, &sp.at("max"));
        let floor = ctx.capacity(s.floor, &sp.at("floor"));
        if s.min.is_none() && s.max.is_none() && s.floor.is_none() {
            ctx.err(
                &sp,
                "the schedule changes nothing",
                Some("set min, max and/or floor".into()),
            );
        }
        let cap = max.unwrap_or(target_max);
        if let Some(lo) = min {
            if lo > cap {
                let hint = if max.is_none() {
                    format!("the target's max is {target_max}: set max in the window too")
                } else {
                    "min must be <= max".into()
                };
                ctx.err(
                    &sp.at("min"),
                    format!("window min {lo} is greater than its max {cap}"),
                    Some(hint),
                );
            }
        }
        if let Some(f) = floor {
            if f > cap {
                ctx.err(
                    &sp.at("floor"),
                    format!("window floor {f} is greater than its max {cap}"),
                    Some("raise max in the window or lower the floor".into()),
                );
            }
        }
        if max == Some(0) {
            ctx.err(
                &sp.at("max"),
                "a window max of 0 would stop the service",
                Some("use min = 0 on the target to allow scale to zero".into()),
            );
        }
        if ctx.diags.len() == before {
            if let Some(when) = when {
                out.push(Schedule {
                    name,
                    when,
                    min,
                    max,
                    floor,
                });
            }
        }
    }
    out
}

/// A standard 5-field cron expression (6 with seconds is refused: capstan ticks every few
/// seconds, so a window starts at the tick after its cron time anyway).
pub fn parse_cron(expr: &str) -> Result<croner::Cron, String> {
    let fields = expr.split_whitespace().count();
    if fields != 5 && !expr.trim_start().starts_with('@') {
        return Err(format!("it has {fields} fields, expected 5"));
    }
    let cron = croner::parser::CronParser::builder()
        .build()
        .parse(expr)
        .map_err(|e| e.to_string())?;
    // An expression such as "0 9 30 2 *" parses but never fires. Every real schedule fires
    // within eight years (leap days included) of any date; the reference date is fixed so
    // validation stays pure.
    let reference = chrono::NaiveDate::from_ymd_opt(2024, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc());
    let fires = reference
        .and_then(|r| cron.find_next_occurrence(&r, true).ok())
        .is_some_and(|t| t.year() <= 2032);
    if !fires {
        return Err("it never fires (no such date)".into());
    }
    Ok(cron)
}

fn rules(ctx: &mut Ctx<'_>, raw: Option<&RawRules>, path: &Path, default: Rules) -> Rules {
    let Some(raw) = raw else { return default };
    let mut r = default.clone();
    r.stabilization_window_secs = ctx.duration(
        &raw.stabilization_window,
        &path.at("stabilization_window"),
        default.stabilization_window_secs,
    );
    if r.stabilization_window_secs > 3600 {
        ctx.err(
            &path.at("stabilization_window"),
            "stabilization window is at most 1h",
            Some("HPA limits it to 3600s".into()),
        );
    }
    if let Some(s) = &raw.select {
        if let Some(s) = ctx.choice(s, &["max", "min", "disabled"], &path.at("select")) {
            r.select = match s {
                "max" => Select::Max,
                "min" => Select::Min,
                _ => Select::Disabled,
            };
        }
    }
    if let Some(ps) = &raw.policies {
        r.policies.clear();
        for (i, p) in ps.iter().enumerate() {
            let pp = path.at("policies").at(i);
            let kind = match p.kind.as_deref() {
                None => {
                    ctx.missing(&pp.at("type"), "\"pods\" (units) or \"percent\"");
                    None
                }
                Some(k) => ctx
                    .choice(k, &["pods", "percent"], &pp.at("type"))
                    .map(|k| {
                        if k == "pods" {
                            RateKind::Pods
                        } else {
                            RateKind::Percent
                        }
                    }),
            };
            let value = match p.value {
                Some(v) if (1..=MAX_CAPACITY).contains(&v) => Some(v as u32),
                Some(v) => {
                    ctx.err(
                        &pp.at("value"),
                        format!("rate limit value {v} is out of range"),
                        Some("use 1 or more".into()),
                    );
                    None
                }
                None => {
                    ctx.missing(&pp.at("value"), "how many units (or percent) per period");
                    None
                }
            };
            let period = ctx.duration(&p.period, &pp.at("period"), 0);
            if p.period.is_none() {
                ctx.missing(&pp.at("period"), "the period of the limit, e.g. \"60s\"");
            } else if !(1..=1800).contains(&period) {
                ctx.err(
                    &pp.at("period"),
                    format!("period {period}s is out of range"),
                    Some("use 1s to 30m, as HPA does".into()),
                );
            }
            if let (Some(kind), Some(value)) = (kind, value) {
                r.policies.push(RatePolicy {
                    kind,
                    value,
                    period_secs: period.max(1),
                });
            }
        }
        if r.policies.is_empty() && r.select != Select::Disabled && !ps.is_empty() {
            // Errors already reported for each entry.
        } else if ps.is_empty() && r.select != Select::Disabled {
            ctx.err(
                &path.at("policies"),
                "no rate limit policies",
                Some("add one, or set select = \"disabled\" to forbid this direction".into()),
            );
        }
    }
    r
}

fn behavior(ctx: &mut Ctx<'_>, raw: Option<&RawBehavior>, path: &Path) -> Behavior {
    let d = Behavior::default();
    let Some(raw) = raw else { return d };
    Behavior {
        scale_up: rules(
            ctx,
            raw.scale_up.as_ref(),
            &path.at("scale_up"),
            d.scale_up.clone(),
        ),
        scale_down: rules(
            ctx,
            raw.scale_down.as_ref(),
            &path.at("scale_down"),
            d.scale_down.clone(),
        ),
        scale_out_cooldown_secs: ctx.duration(
            &raw.scale_out_cooldown,
            &path.at("scale_out_cooldown"),
            0,
        ),
        scale_in_cooldown_secs: ctx.duration(
            &raw.scale_in_cooldown,
            &path.at("scale_in_cooldown"),
            0,
        ),
        warmup_secs: ctx.duration(&raw.warmup, &path.at("warmup"), 0),
        disable_scale_in: raw.disable_scale_in.unwrap_or(false),
        paused: raw.paused.unwrap_or(false),
        scale_to_zero_after_secs: ctx.duration(
            &raw.scale_to_zero_after,
            &path.at("scale_to_zero_after"),
            300,
        ),
    }
}

#[cfg(test)]
mod split_tests {
    use super::*;

    /// What a parse gives, as comparable text.
    fn outcome(r: &Result<FilePart, Vec<Diagnostic>>) -> String {
        match r {
            Ok(part) => format!(
                "{:?}\n{:?}\n{:?}\n{:?}",
                part.global, part.targets, part.target_places, part.poll_every
            ),
            Err(diags) => format!("{diags:?}"),
        }
    }

    /// Parsed one target at a time (when the layout allows) and whole: the same config or
    /// the same diagnostics, byte for byte. Whether the split applied is returned.
    fn same_both_ways(file: &str, text: &str) -> bool {
        let map = SourceMap::new(file, text);
        let whole = outcome(&parse_whole(&map, text));
        let Some(split) = super::super::split::split(text) else {
            return false;
        };
        match parse_split(&map, text, &split) {
            Some(r) => {
                assert_eq!(outcome(&r), whole, "{file}");
                true
            }
            None => false,
        }
    }

    #[test]
    fn every_shipped_and_corpus_config_reads_the_same_split_or_whole() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = Vec::new();
        for dir in [
            "config",
            "config/examples",
            "tests/configs/invalid",
            "tests/configs/pollevery",
            "tests/configs/twoglobals",
        ] {
            for e in std::fs::read_dir(root.join(dir)).unwrap() {
                let p = e.unwrap().path();
                if p.extension().is_some_and(|x| x == "toml") {
                    files.push(p);
                }
            }
        }
        let mut split = 0;
        for f in &files {
            let text = std::fs::read_to_string(f).unwrap();
            if same_both_ways(&f.display().to_string(), &text) {
                split += 1;
            }
        }
        // Most files have the usual layout: the comparison is not vacuous.
        assert!(
            split * 2 > files.len(),
            "{split} of {} files split",
            files.len()
        );
    }

    #[test]
    fn a_lease_name_cannot_hold_the_key_separator() {
        let cfg = |name: &str| {
            format!("[global.lease]\nenabled = true\nname = \"{name}\"\n[[target]]\nname = \"a\"\nkind = \"ecs_service\"\ncluster = \"c\"\nservice = \"a\"\nmin = 1\nmax = 4\n[[target.metric]]\nname = \"cpu\"\nsource = \"ecs_cpu\"\n[[target.policy]]\ntype = \"target_tracking\"\nmetric = \"cpu\"\ntarget_value = 60\n")
        };
        assert!(crate::config::from_str("t.toml", &cfg("shop-eu.1")).is_ok());
        for bad in ["shop#eu", ""] {
            let d = crate::config::from_str("t.toml", &cfg(bad)).unwrap_err();
            let text = d[0].to_string();
            assert!(text.starts_with("t.toml:3:"), "{text}");
            assert!(
                text.contains("global.lease.name") && text.contains('#'),
                "{text}"
            );
            assert!(text.contains("hint:"), "{text}");
        }
    }

    #[test]
    fn errors_in_later_targets_name_their_index_line_and_column() {
        let text = r#"[global]
poll_interval = "15s"

[[target]]
name = "a"
kind = "ecs_service"
cluster = "c"
service = "a"
min = 1
max = 4
[[target.metric]]
name = "cpu"
source = "ecs_cpu"
[[target.policy]]
type = "target_tracking"
metric = "cpu"
target_value = 60

[[target]]
name = "a"
kind = "ecs_service"
cluster = "c"
service = "b"
min = 5
max = 4
mni = 3
[[target.metric]]
name = "cpu"
source = "ecs_cpu"
poll_every = "1s"
[[target.policy]]
type = "target_tracking"
metric = "cpu"
target_value = "high"
[target.behavior]
scale_in_cooldown = "soon"
"#;
        assert!(same_both_ways("f.toml", text));
        let diags = parse_file("f.toml", text).unwrap_err();
        let keys: Vec<(&str, usize, usize)> = diags
            .iter()
            .map(|d| (d.key.as_str(), d.line, d.column))
            .collect();
        assert!(keys.contains(&("target[1].name", 20, 8)), "{keys:?}");
        assert!(keys.contains(&("target[1].mni", 26, 1)), "{keys:?}");
        assert!(
            keys.iter()
                .any(|(k, l, _)| k.starts_with("target[1].policy[0]") && *l == 34),
            "{keys:?}"
        );
        assert!(
            keys.iter()
                .any(|(k, l, _)| k.starts_with("target[1].behavior") && *l == 36),
            "{keys:?}"
        );
        // A syntax error in a later target: the split gives up, and the whole parse
        // reports it at its place.
        let broken = text.replace("min = 5", "min = = 5");
        assert!(!same_both_ways("f.toml", &broken));
        let d = parse_file("f.toml", &broken).unwrap_err();
        assert_eq!(d.len(), 1);
        assert_eq!((d[0].line, d[0].key.as_str()), (24, ""));
    }
}
