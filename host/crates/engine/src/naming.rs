//! Names of indexes and constraints, decided for the whole pipeline at plan
//! time and stored with the plan, so that a resumed run uses the same ones
//! and no two tables ever compete for a name while they finish. A source
//! name is kept where the target's scope has it free; otherwise the table's
//! name goes in front (`rental_idx_fk_customer_id`), then a number.

use std::collections::HashSet;

use dmp_contract::{NameRules, NameScope, RELATIONS, TakenName};
use dmp_model::TableSchema;

/// Gives every index, primary key, foreign key and CHECK of `tables` a
/// name unique in its scope on the target, avoiding `taken`. Renamed
/// objects keep their source name in `source_name`.
pub(crate) fn assign(tables: &mut [TableSchema], rules: &NameRules, taken: &[TakenName]) {
    let mut used = Used {
        rules,
        names: HashSet::new(),
    };
    for t in taken {
        used.insert(Key::Group(t.group), &t.name);
    }
    // Tables (and their partitions) are created first: their names are
    // never given away.
    for table in tables.iter() {
        used.insert(Key::Group(RELATIONS), &table.name);
        for partition in table.partitioning.iter().flat_map(|p| p.all_partitions()) {
            used.insert(Key::Group(RELATIONS), &partition.name);
        }
    }
    for (i, table) in tables.iter_mut().enumerate() {
        let scope = |s: NameScope| match s {
            NameScope::Table => Key::Table(i),
            NameScope::Schema(group) => Key::Group(group),
        };
        if let Some(suffix) = rules.primary_key_suffix
            && !table.primary_key.is_empty()
        {
            let wanted = table
                .primary_key_name
                .clone()
                .unwrap_or_else(|| format!("{}{suffix}", table.name));
            table.primary_key_name =
                Some(used.claim(scope(rules.primary_key), &table.name, &wanted));
        }
        for index in &mut table.indexes {
            let name = used.claim(scope(rules.index), &table.name, &index.name);
            if name != index.name {
                index.source_name.get_or_insert_with(|| index.name.clone());
                index.name = name;
            }
        }
        for fk in &mut table.foreign_keys {
            let name = used.claim(scope(rules.foreign_key), &table.name, &fk.name);
            if name != fk.name {
                fk.source_name.get_or_insert_with(|| fk.name.clone());
                fk.name = name;
            }
        }
        for check in &mut table.checks {
            let name = used.claim(scope(rules.check), &table.name, &check.name);
            if name != check.name {
                check.source_name.get_or_insert_with(|| check.name.clone());
                check.name = name;
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Table(usize),
    Group(u8),
}

struct Used<'r> {
    rules: &'r NameRules,
    names: HashSet<(Key, String)>,
}

impl Used<'_> {
    fn normal(&self, name: &str) -> String {
        if self.rules.case_insensitive {
            name.to_lowercase()
        } else {
            name.to_string()
        }
    }

    fn insert(&mut self, key: Key, name: &str) -> bool {
        let normal = self.normal(name);
        self.names.insert((key, normal))
    }

    fn free(&self, key: Key, name: &str) -> bool {
        !self.names.contains(&(key, self.normal(name)))
    }

    /// The first free name among `wanted`, `<table>_<wanted>`,
    /// `<table>_<wanted>_2`, …, cut to the target's length; claimed.
    fn claim(&mut self, key: Key, table: &str, wanted: &str) -> String {
        let max = self.rules.max_bytes;
        let plain = cut(wanted, max);
        let prefixed = cut(&format!("{table}_{wanted}"), max);
        for candidate in [plain, prefixed.clone()] {
            if self.free(key, &candidate) {
                self.insert(key, &candidate);
                return candidate;
            }
        }
        for n in 2.. {
            let suffix = format!("_{n}");
            let candidate = format!(
                "{}{suffix}",
                cut(&prefixed, max.saturating_sub(suffix.len()))
            );
            if self.free(key, &candidate) {
                self.insert(key, &candidate);
                return candidate;
            }
        }
        unreachable!("the numbered names never run out")
    }
}

/// `name` cut to `max` bytes at a character boundary.
fn cut(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_string();
    }
    let mut end = max;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use dmp_contract::CONSTRAINTS;
    use dmp_model::{ForeignKey, Index};

    const PG: NameRules = NameRules {
        max_bytes: 63,
        case_insensitive: false,
        index: NameScope::Schema(RELATIONS),
        primary_key: NameScope::Schema(RELATIONS),
        foreign_key: NameScope::Table,
        check: NameScope::Table,
        primary_key_suffix: Some("_pkey"),
    };

    fn table(name: &str, indexes: &[&str], fks: &[&str]) -> TableSchema {
        TableSchema {
            name: name.into(),
            primary_key: vec!["id".into()],
            indexes: indexes
                .iter()
                .map(|i| Index {
                    name: (*i).into(),
                    columns: vec!["x".into()],
                    unique: false,
                    source_name: None,
                })
                .collect(),
            foreign_keys: fks
                .iter()
                .map(|f| ForeignKey {
                    name: (*f).into(),
                    columns: vec!["x".into()],
                    references: "p".into(),
                    referenced_columns: vec!["id".into()],
                    on_delete: "NO ACTION".into(),
                    on_update: "NO ACTION".into(),
                    source_name: None,
                })
                .collect(),
            ..Default::default()
        }
    }

    fn index_names(t: &TableSchema) -> Vec<&str> {
        t.indexes.iter().map(|i| i.name.as_str()).collect()
    }

    #[test]
    fn shared_index_names_get_their_table_in_front_once_per_schema() {
        let mut tables = vec![
            table("payment", &["idx_fk_customer_id", "idx_fk_staff_id"], &[]),
            table("rental", &["idx_fk_customer_id", "idx_fk_staff_id"], &[]),
            // An index named like a table, and like the renamed one.
            table("store", &["payment", "rental_idx_fk_staff_id"], &[]),
        ];
        assign(&mut tables, &PG, &[]);
        assert_eq!(
            index_names(&tables[0]),
            ["idx_fk_customer_id", "idx_fk_staff_id"]
        );
        assert_eq!(
            index_names(&tables[1]),
            ["rental_idx_fk_customer_id", "rental_idx_fk_staff_id"]
        );
        assert_eq!(
            index_names(&tables[2]),
            ["store_payment", "store_rental_idx_fk_staff_id"]
        );
        assert_eq!(
            tables[1].indexes[0].source_name.as_deref(),
            Some("idx_fk_customer_id")
        );
        assert_eq!(tables[0].indexes[0].source_name, None);
        assert_eq!(tables[1].primary_key_name.as_deref(), Some("rental_pkey"));
        // Deterministic: the same input gives the same names.
        let mut again = vec![
            table("payment", &["idx_fk_customer_id", "idx_fk_staff_id"], &[]),
            table("rental", &["idx_fk_customer_id", "idx_fk_staff_id"], &[]),
            table("store", &["payment", "rental_idx_fk_staff_id"], &[]),
        ];
        assign(&mut again, &PG, &[]);
        assert_eq!(again, tables);
    }

    #[test]
    fn taken_names_long_names_and_case() {
        let long = "i".repeat(70);
        let mut tables = vec![table("t", &[&long, &long[..63]], &[])];
        let taken = [TakenName {
            group: RELATIONS,
            name: "t_pkey".into(),
        }];
        assign(&mut tables, &PG, &taken);
        let names = index_names(&tables[0]);
        assert_eq!(names[0], &long[..63]);
        assert_eq!(names[1], format!("t_{}", &long[..61]));
        assert!(names.iter().all(|n| n.len() <= 63));
        assert_eq!(tables[0].primary_key_name.as_deref(), Some("t_t_pkey"));

        let mysql = NameRules {
            max_bytes: 64,
            case_insensitive: true,
            index: NameScope::Table,
            primary_key: NameScope::Table,
            foreign_key: NameScope::Schema(CONSTRAINTS),
            check: NameScope::Table,
            primary_key_suffix: None,
        };
        let mut tables = vec![
            table("a", &["by_x"], &["fk_parent"]),
            table("b", &["by_x", "BY_X"], &["FK_PARENT"]),
        ];
        assign(&mut tables, &mysql, &[]);
        assert_eq!(index_names(&tables[1]), ["by_x", "b_BY_X"]);
        assert_eq!(tables[1].foreign_keys[0].name, "b_FK_PARENT");
        assert_eq!(tables[0].primary_key_name, None);
    }
}
