//! Conflict resolvers for two-way sync: the [`Resolver`] trait, and the
//! adapter behind the WIT `resolver` resource.

use crate::resolver_bindings::exports::dmp::transform::resolve::{
    Conflict, GuestResolver, Resolution, Resolver as Handle, RowVersion,
};
use crate::{Config, Value};

/// A conflict resolver. Implement it and export the type with
/// [`export_resolver!`](crate::export_resolver).
///
/// DMP asks a resolver about the same conflict on both legs of a two-way
/// sync, seen from each end: the local row of one leg is the remote new
/// row of the other, and an update of a row deleted on the other side is
/// met there as a delete of a changed row. Both answers must leave the
/// same row on both databases. So `resolve` must depend on nothing but the
/// conflict and the settings — no state carried between calls (it gets
/// `&self`), no order of calls — and must treat the two ends alike, which
/// means deciding by [`Side`](crate::Side) or by the rows, never by which one is local.
///
/// ```
/// use dmp_sdk::{Config, Conflict, Resolution, Resolver, Side};
///
/// /// Side A's row wins, whichever leg asks.
/// struct AWins;
///
/// impl Resolver for AWins {
///     fn open(_config: &Config) -> Result<Self, String> {
///         Ok(AWins)
///     }
///
///     fn resolve(&self, conflict: &Conflict) -> Result<Resolution, String> {
///         Ok(if conflict.local.origin == Side::A {
///             Resolution::KeepLocal
///         } else {
///             Resolution::ApplyRemote
///         })
///     }
/// }
///
/// dmp_sdk::export_resolver!(AWins);
/// ```
pub trait Resolver: Sized + 'static {
    /// Opens the resolver with the pipeline's settings for it. An error
    /// stops the pipeline before any change moves, with this message.
    fn open(config: &Config) -> Result<Self, String>;

    /// Decides one conflict. An error fails the change, with this message
    /// and the plugin and table named.
    fn resolve(&self, conflict: &Conflict) -> Result<Resolution, String>;
}

impl Conflict {
    /// Position of a column in the table's rows.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.table.columns.iter().position(|c| c.name == name)
    }

    /// The value of column `name` in `row` (a row of this conflict).
    pub fn value<'r>(&self, row: &'r [Value], name: &str) -> Option<&'r Value> {
        row.get(self.column_index(name)?)
    }
}

impl RowVersion {
    /// The version's row, or an empty slice where there is none.
    pub fn values(&self) -> &[Value] {
        self.row.as_deref().unwrap_or_default()
    }
}

/// The WIT resource wrapping a plugin's [`Resolver`].
pub struct ResolverAdapter<R: Resolver> {
    resolver: R,
}

impl<R: Resolver> GuestResolver for ResolverAdapter<R> {
    fn open(config: Vec<(String, String)>) -> Result<Handle, String> {
        crate::adapter::log_panics();
        let resolver = R::open(&Config::new(config))?;
        Ok(Handle::new(ResolverAdapter { resolver }))
    }

    fn resolve(&self, conflict: Conflict) -> Result<Resolution, String> {
        self.resolver.resolve(&conflict)
    }
}

/// Exports a [`Resolver`] implementation as the plugin's `resolve`
/// interface (world `resolver`). Use it once per plugin crate, instead of
/// [`export_transform!`](crate::export_transform).
#[macro_export]
macro_rules! export_resolver {
    ($resolver:ty) => {
        #[doc(hidden)]
        struct DmpResolverExport;

        impl $crate::resolver_bindings::exports::dmp::transform::resolve::Guest
            for DmpResolverExport
        {
            type Resolver = $crate::ResolverAdapter<$resolver>;
        }

        $crate::resolver_bindings::export!(DmpResolverExport with_types_in $crate::resolver_bindings);
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Column, ConflictKind, DataType, Side, TableSchema};

    fn column(name: &str) -> Column {
        Column {
            name: name.into(),
            data_type: DataType::Int64,
            nullable: true,
            default: None,
        }
    }

    #[test]
    fn a_conflicts_rows_read_by_column_name() {
        let conflict = Conflict {
            table: TableSchema {
                namespace: None,
                name: "tally".into(),
                columns: vec![column("id"), column("views")],
                primary_key: vec!["id".into()],
            },
            key: vec![Value::Int(1)],
            kind: ConflictKind::DeleteMissing,
            local: RowVersion {
                row: None,
                commit_time: None,
                origin: Side::B,
            },
            remote_old: Some(vec![Value::Int(1), Value::Int(10)]),
            remote_new: RowVersion {
                row: Some(vec![Value::Int(1), Value::Int(12)]),
                commit_time: Some(0),
                origin: Side::A,
            },
        };
        assert_eq!(conflict.column_index("views"), Some(1));
        assert_eq!(conflict.column_index("likes"), None);
        assert_eq!(
            conflict.value(conflict.remote_new.values(), "views"),
            Some(&Value::Int(12))
        );
        // No local row: nothing to read, no panic.
        assert_eq!(conflict.value(conflict.local.values(), "views"), None);
    }
}
