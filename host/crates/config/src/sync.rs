//! Two-way sync (`mode = "bidirectional"`): side A is the pipeline's
//! `[source]`, side B its `[target]`, each both source and target. The
//! pipeline runs as two legs — A to B and B to A — each an ordinary change
//! stream with its checkpoint in its own target, and each applying under
//! the pipeline's sync id, which the other leg's reader drops: nothing DMP
//! wrote comes back.

use serde::Deserialize;
use toml::Spanned;

use crate::Pipeline;
use crate::error::{Error, Result};
use crate::file::{Places, RunMode, TransformSection};
use dmp_contract::conflict::{ConflictRules, Policy, ResolverSlot, Side};

/// `[sync]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub(crate) struct SyncSection {
    /// The first load, before the two streams: `a_to_b` (A's rows copied
    /// into B), `b_to_a`, or `none` (both hold the same rows already).
    /// Default: `a_to_b`.
    #[serde(default)]
    initial: SyncInitial,
    /// How far apart the clocks of the two databases and DMP may be before
    /// a warning (checked at start and every minute): `1s`, `250ms`.
    /// Default: `1s`.
    max_clock_skew: Option<Spanned<String>>,
    /// Who wins when both sides changed a row: `a_wins`, `b_wins`,
    /// `last_writer_wins` (by `conflict_column`, else by commit time),
    /// `manual` (parked) or `resolver`.
    /// Default: `a_wins`.
    #[serde(default)]
    conflict: Option<Spanned<ConflictName>>,
    /// The column `last_writer_wins` compares (`updated_at`, `version`):
    /// the greater value wins, equal values go to side A.
    conflict_column: Option<String>,
    /// How long `last_writer_wins` keeps the tombstone of a deleted row
    /// past the remote changes of its time: `24h`, `7d`. Longer than a
    /// row's two writes may be apart and still conflict. Default: `24h`.
    tombstone_retention: Option<Spanned<String>>,
    /// The `.wasm` resolver plugin (world `resolver`) that `conflict =
    /// "resolver"` asks, relative to this file.
    resolver: Option<Spanned<String>>,
    /// `[sync.resolver_config]`: settings the resolver opens with
    /// (`${…}` allowed).
    #[serde(default)]
    resolver_config: std::collections::BTreeMap<String, Spanned<String>>,
    /// `[sync.tables.NAME]`: a table's own `conflict` and
    /// `conflict_column`.
    #[serde(default)]
    tables: std::collections::BTreeMap<String, Spanned<SyncTableSection>>,
}

/// `[sync.tables.NAME]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
struct SyncTableSection {
    conflict: Option<Spanned<ConflictName>>,
    conflict_column: Option<String>,
}

/// A conflict policy's name in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ConflictName {
    AWins,
    BWins,
    LastWriterWins,
    Manual,
    Resolver,
}

/// Which way the first load of a two-way sync goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncInitial {
    #[default]
    AToB,
    BToA,
    None,
}

/// `[sync] max_clock_skew` by default.
pub const DEFAULT_MAX_CLOCK_SKEW: std::time::Duration = std::time::Duration::from_secs(1);

/// `[sync] tombstone_retention` by default.
pub const DEFAULT_TOMBSTONE_RETENTION: std::time::Duration =
    std::time::Duration::from_secs(24 * 3600);

/// `[sync]` settings.
#[derive(Debug, Clone)]
pub struct SyncSettings {
    pub initial: SyncInitial,
    pub max_clock_skew: std::time::Duration,
    /// Who wins a conflict (`[sync] conflict`).
    pub conflict: Policy,
    /// Tables of their own policy, by name.
    pub table_conflicts: std::collections::BTreeMap<String, Policy>,
    pub tombstone_retention: std::time::Duration,
}

impl Default for SyncSettings {
    fn default() -> Self {
        SyncSettings {
            initial: SyncInitial::default(),
            max_clock_skew: DEFAULT_MAX_CLOCK_SKEW,
            conflict: Policy::AWins,
            table_conflicts: std::collections::BTreeMap::new(),
            tombstone_retention: DEFAULT_TOMBSTONE_RETENTION,
        }
    }
}

/// One direction of a two-way sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leg {
    /// From side A (the `[source]`) to side B (the `[target]`).
    AToB,
    BToA,
}

impl Leg {
    pub fn as_str(self) -> &'static str {
        match self {
            Leg::AToB => "a_to_b",
            Leg::BToA => "b_to_a",
        }
    }
}

/// `[sync]` read for `mode`: only a two-way sync has one, and its rows
/// pass unchanged (a transform maps one way only).
pub(crate) fn settings(
    section: Option<&Spanned<SyncSection>>,
    mode: RunMode,
    transforms: &[TransformSection],
    places: &Places<'_>,
) -> Result<SyncSettings> {
    if mode != RunMode::Bidirectional {
        return match section {
            Some(section) => Err(Error::Config(format!(
                "{}: applies to mode = \"bidirectional\" only",
                places.at(section.span(), "sync")
            ))),
            None => Ok(SyncSettings::default()),
        };
    }
    if let Some(transform) = transforms.first() {
        return Err(Error::Config(format!(
            "{}: a two-way sync carries rows unchanged both ways (a transform maps one way only)",
            transform.place
        )));
    }
    let Some(section) = section.map(Spanned::get_ref) else {
        return Ok(SyncSettings::default());
    };
    let max_clock_skew = match &section.max_clock_skew {
        Some(text) => places.duration(text, "sync.max_clock_skew", "`1s` or `250ms`")?,
        None => DEFAULT_MAX_CLOCK_SKEW,
    };
    let tombstone_retention = match &section.tombstone_retention {
        Some(text) => places.duration(text, "sync.tombstone_retention", "`24h` or `7d`")?,
        None => DEFAULT_TOMBSTONE_RETENTION,
    };
    let resolver = match &section.resolver {
        Some(path) => {
            let mut config = Vec::new();
            for (key, value) in &section.resolver_config {
                config.push((key.clone(), places.text(value, "sync.resolver_config")?));
            }
            Some(ResolverSlot::new(
                places.path(path, "sync.resolver")?,
                config,
            ))
        }
        None => None,
    };
    let policy = |name, column, at: &str| policy(name, column, resolver.as_ref(), at, places);
    let conflict = policy(
        section.conflict.as_ref(),
        section.conflict_column.as_deref(),
        "sync",
    )?
    .unwrap_or(Policy::AWins);
    let mut table_conflicts = std::collections::BTreeMap::new();
    for (name, table) in &section.tables {
        let at = format!("sync.tables.{name}");
        let own = table.get_ref();
        // A column alone keeps the pipeline's policy with that column.
        let named = own.conflict.as_ref().or(section.conflict.as_ref());
        // The pipeline's column serves a table's last_writer_wins, never
        // another policy of its own.
        let inherits_column = own
            .conflict
            .as_ref()
            .is_none_or(|c| *c.get_ref() == ConflictName::LastWriterWins);
        let column = own.conflict_column.as_deref().or(section
            .conflict_column
            .as_deref()
            .filter(|_| inherits_column));
        if let Some(policy) = policy(named, column, &at)? {
            table_conflicts.insert(name.clone(), policy);
        }
    }
    Ok(SyncSettings {
        initial: section.initial,
        max_clock_skew,
        conflict,
        table_conflicts,
        tombstone_retention,
    })
}

/// The policy `name` (with `column` for `last_writer_wins`) read at
/// `[at]`; `None` when not named.
fn policy(
    name: Option<&Spanned<ConflictName>>,
    column: Option<&str>,
    resolver: Option<&ResolverSlot>,
    at: &str,
    places: &Places<'_>,
) -> Result<Option<Policy>> {
    let Some(name) = name else {
        return Ok(None);
    };
    let place = || places.at(name.span(), &format!("{at}.conflict"));
    Ok(Some(match (name.get_ref(), column) {
        (ConflictName::LastWriterWins, Some(column)) if !column.trim().is_empty() => {
            Policy::LastWriterWins {
                column: column.to_string(),
            }
        }
        (ConflictName::LastWriterWins, None) => Policy::LastCommitWins,
        (ConflictName::LastWriterWins, Some(_)) => {
            return Err(Error::Config(format!(
                "{}: conflict_column is empty: name the column that orders the writes (an \
                 updated_at or a version), or leave it out to order them by commit time",
                place()
            )));
        }
        (_, Some(_)) => {
            return Err(Error::Config(format!(
                "{}: conflict_column applies to last_writer_wins only",
                place()
            )));
        }
        (ConflictName::Resolver, None) => match resolver {
            Some(slot) => Policy::Resolver(slot.clone()),
            None => {
                return Err(Error::Config(format!(
                    "{}: conflict = \"resolver\" needs [sync] resolver, the plugin's .wasm file",
                    place()
                )));
            }
        },
        (ConflictName::AWins, None) => Policy::AWins,
        (ConflictName::BWins, None) => Policy::BWins,
        (ConflictName::Manual, None) => Policy::Manual,
    }))
}

impl Pipeline {
    /// The sync id of a two-way sync: the tag of what DMP applies.
    pub fn sync_id(&self) -> &str {
        &self.name
    }

    /// Leg `leg` of a two-way sync as a change stream of its own: named
    /// `NAME.a_to_b` / `NAME.b_to_a` (its checkpoints, its state, its
    /// default slot), `full+cdc` for the leg that does the first load and
    /// `cdc` for the other, applying under the sync id and dropping it.
    /// Side B's slot and publication are side A's (`[cdc]`) with `_b`; its
    /// server id, side A's plus one.
    pub fn leg(&self, leg: Leg) -> Pipeline {
        let mut out = self.clone();
        out.name = format!("{}.{}", self.name, leg.as_str());
        out.origin = Some(self.sync_id().to_string());
        out.conflicts = Some(ConflictRules {
            remote: match leg {
                Leg::AToB => Side::A,
                Leg::BToA => Side::B,
            },
            policy: self.sync.conflict.clone(),
            tables: self.sync.table_conflicts.clone(),
            tombstone_retention: self.sync.tombstone_retention,
        });
        let loads = matches!(
            (leg, self.sync.initial),
            (Leg::AToB, SyncInitial::AToB) | (Leg::BToA, SyncInitial::BToA)
        );
        out.mode = if loads {
            RunMode::FullCdc
        } else {
            RunMode::Cdc
        };
        if leg == Leg::BToA {
            std::mem::swap(&mut out.source, &mut out.target);
            out.cdc.slot = self.cdc.slot.as_ref().map(|s| format!("{s}_b"));
            out.cdc.publication = self.cdc.publication.as_ref().map(|p| format!("{p}_b"));
            out.cdc.server_id = self.cdc.server_id.map(|id| id.wrapping_add(1));
        }
        out
    }

    /// The change streams the pipeline reads: its own, or a two-way
    /// sync's two legs (each with its slot, its checkpoint).
    pub fn streams(&self) -> Vec<Pipeline> {
        if self.mode == RunMode::Bidirectional {
            vec![self.leg(Leg::AToB), self.leg(Leg::BToA)]
        } else {
            vec![self.clone()]
        }
    }

    /// The leg that copies the first load, if any.
    pub fn loading_leg(&self) -> Option<Leg> {
        match self.sync.initial {
            SyncInitial::AToB => Some(Leg::AToB),
            SyncInitial::BToA => Some(Leg::BToA),
            SyncInitial::None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Pipeline> {
        crate::file::parse(
            text,
            std::path::Path::new("conf/p.toml"),
            &crate::ProcessSecrets,
        )
    }

    const ENDS: &str =
        "[source]\nurl = \"postgres://a@h/one\"\n[target]\nurl = \"mysql://b@h/two\"\n";

    #[test]
    fn a_two_way_sync_runs_as_two_legs_each_with_its_own_stream() {
        let p = parse(&format!(
            "{ENDS}[run]\nmode = \"bidirectional\"\n[cdc]\nslot = \"shop\"\nserver_id = 40\n"
        ))
        .unwrap();
        assert_eq!(p.sync.initial, SyncInitial::AToB);
        assert_eq!(p.sync.max_clock_skew, DEFAULT_MAX_CLOCK_SKEW);
        let (forward, back) = (p.leg(Leg::AToB), p.leg(Leg::BToA));
        assert_eq!(forward.name, "p.a_to_b");
        assert_eq!(forward.mode, RunMode::FullCdc);
        assert_eq!(back.mode, RunMode::Cdc);
        assert_eq!(back.source.to_string(), p.target.to_string());
        assert_eq!(back.target.to_string(), p.source.to_string());
        assert_eq!(forward.cdc.slot.as_deref(), Some("shop"));
        assert_eq!(back.cdc.slot.as_deref(), Some("shop_b"));
        assert_eq!(back.cdc.server_id, Some(41));
        for leg in [&forward, &back] {
            assert_eq!(leg.change_options().origin.as_deref(), Some("p"));
            assert_eq!(leg.target_options().origin.as_deref(), Some("p"));
        }
        assert_eq!(p.change_options().origin, None);
        let none = parse(&format!(
            "{ENDS}[run]\nmode = \"bidirectional\"\n[sync]\ninitial = \"none\"\n"
        ))
        .unwrap();
        assert_eq!(none.loading_leg(), None);
        let skew = parse(&format!(
            "{ENDS}[run]\nmode = \"bidirectional\"\n[sync]\nmax_clock_skew = \"250ms\"\n"
        ))
        .unwrap();
        assert_eq!(
            skew.sync.max_clock_skew,
            std::time::Duration::from_millis(250)
        );
        assert_eq!(none.leg(Leg::AToB).mode, RunMode::Cdc);
        assert_eq!(none.streams().len(), 2);
    }

    #[test]
    fn tombstones_are_kept_for_a_day_or_as_long_as_said() {
        let p = parse(&format!("{ENDS}[run]\nmode = \"bidirectional\"\n")).unwrap();
        let rules = p.leg(Leg::BToA).conflicts.unwrap();
        assert_eq!(rules.tombstone_retention, DEFAULT_TOMBSTONE_RETENTION);
        let week = parse(&format!(
            "{ENDS}[run]\nmode = \"bidirectional\"\n[sync]\ntombstone_retention = \"7d\"\n"
        ))
        .unwrap();
        let rules = week.leg(Leg::AToB).conflicts.unwrap();
        assert_eq!(
            rules.tombstone_retention,
            std::time::Duration::from_secs(7 * 86_400)
        );
        let bad = parse(&format!(
            "{ENDS}[run]\nmode = \"bidirectional\"\n[sync]\ntombstone_retention = \"soon\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            bad.contains("sync.tombstone_retention") && bad.contains("soon"),
            "{bad}"
        );
    }

    #[test]
    fn conflict_policies_are_read_per_pipeline_and_per_table() {
        let sync = |lines: &str| {
            parse(&format!(
                "{ENDS}[run]\nmode = \"bidirectional\"\n[sync]\n{lines}\n"
            ))
        };
        let p = sync("").unwrap();
        let rules = p.leg(Leg::BToA).target_options().conflicts.unwrap();
        assert_eq!((rules.remote, &rules.policy), (Side::B, &Policy::AWins));
        assert_eq!(p.target_options().conflicts, None);
        let p = sync(
            "conflict = \"last_writer_wins\"\nconflict_column = \"updated_at\"\n\
             [sync.tables.ledger]\nconflict = \"manual\"\n\
             [sync.tables.stock]\nconflict_column = \"version\"",
        )
        .unwrap();
        let rules = p.leg(Leg::AToB).target_options().conflicts.unwrap();
        assert_eq!(rules.remote, Side::A);
        let lww = |c: &str| Policy::LastWriterWins { column: c.into() };
        assert_eq!(rules.policy("orders"), &lww("updated_at"));
        assert_eq!(rules.policy("ledger"), &Policy::Manual);
        assert_eq!(rules.policy("stock"), &lww("version"));
        let p = sync(
            "conflict = \"resolver\"\nresolver = \"merge.wasm\"\n[sync.resolver_config]\ncounters = \"n\"",
        )
        .unwrap();
        let Policy::Resolver(slot) = &p.sync.conflict else {
            panic!("{:?}", p.sync.conflict);
        };
        assert!(slot.plugin.ends_with("conf/merge.wasm"), "{slot:?}");
        assert_eq!(slot.config, [("counters".to_string(), "n".to_string())]);
        // Without a column: by commit time.
        let p = sync("conflict = \"last_writer_wins\"").unwrap();
        assert_eq!(p.sync.conflict, Policy::LastCommitWins);
        for (lines, says) in [
            (
                "conflict = \"last_writer_wins\"\nconflict_column = \" \"",
                "conflict_column is empty",
            ),
            (
                "conflict = \"a_wins\"\nconflict_column = \"v\"",
                "last_writer_wins only",
            ),
            ("conflict = \"resolver\"", "needs [sync] resolver"),
            ("conflict = \"newest\"", "newest"),
        ] {
            let e = sync(lines).unwrap_err().to_string();
            assert!(
                e.contains("conf/p.toml:") && e.contains(says),
                "{lines}: {e}"
            );
        }
    }

    #[test]
    fn sync_settings_are_refused_where_they_do_not_apply() {
        let e = parse(&format!(
            "{ENDS}[run]\nmode = \"cdc\"\n[sync]\ninitial = \"none\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("conf/p.toml:7 sync") && e.contains("bidirectional"),
            "{e}"
        );
        let e = parse(&format!(
            "{ENDS}[run]\nmode = \"bidirectional\"\n[[transform]]\nplugin = \"x.wasm\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("transform") && e.contains("one way"), "{e}");
        let e = parse(&format!(
            "{ENDS}[run]\nmode = \"bidirectional\"\n[sync]\ninitial = \"sideways\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("sideways"), "{e}");
        let e = parse(&format!(
            "{ENDS}[run]\nmode = \"bidirectional\"\nevery = \"1h\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("cannot be scheduled"), "{e}");
    }
}
