//! How a target scopes the names of indexes and constraints, so that the
//! engine can decide every name of a pipeline at plan time: unique where
//! the target needs them unique (PostgreSQL's index names are per schema,
//! MySQL's per table), stored with the plan, never raced for by two tables
//! finishing at once.

/// Where a kind of name must be unique.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameScope {
    /// Among the names of its own table.
    Table,
    /// Among the schema's names of the same group; group
    /// [`RELATIONS`] also holds the tables' own names.
    Schema(u8),
}

/// The group of relation names: tables, views, sequences, indexes.
pub const RELATIONS: u8 = 0;
/// A group of constraint names that is not the relations' (MySQL's foreign
/// keys).
pub const CONSTRAINTS: u8 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameRules {
    /// Longest name, in bytes (names are cut at a character boundary).
    pub max_bytes: usize,
    /// Names that differ only in case are the same name.
    pub case_insensitive: bool,
    pub index: NameScope,
    /// The primary key's constraint (on PostgreSQL also its index's name).
    pub primary_key: NameScope,
    pub foreign_key: NameScope,
    pub check: NameScope,
    /// The default name of a primary key constraint (`None`: the target
    /// names none).
    pub primary_key_suffix: Option<&'static str>,
}

impl NameRules {
    /// Every name per table (targets that create no index or constraint).
    pub const PER_TABLE: NameRules = NameRules {
        max_bytes: usize::MAX,
        case_insensitive: false,
        index: NameScope::Table,
        primary_key: NameScope::Table,
        foreign_key: NameScope::Table,
        check: NameScope::Table,
        primary_key_suffix: None,
    };
}

/// A name the target's schema already gives to something the run neither
/// creates nor replaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TakenName {
    /// [`RELATIONS`] or another group of [`NameScope::Schema`].
    pub group: u8,
    pub name: String,
}
