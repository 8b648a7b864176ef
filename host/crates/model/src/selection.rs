//! Which tables a pipeline moves: include and exclude globs over table names.

use globset::{Glob, GlobSet, GlobSetBuilder};

#[derive(Debug, Clone)]
pub struct TableSelection {
    include: GlobSet,
    exclude: GlobSet,
    /// Include entries without wildcards: such a table must exist.
    literals: Vec<String>,
}

impl TableSelection {
    /// Builds the selection; an invalid glob is reported with its text.
    pub fn new(include: &[String], exclude: &[String]) -> Result<Self, String> {
        let build = |patterns: &[String]| -> Result<GlobSet, String> {
            let mut set = GlobSetBuilder::new();
            for p in patterns {
                set.add(Glob::new(p).map_err(|e| format!("bad table pattern `{p}`: {e}"))?);
            }
            set.build().map_err(|e| e.to_string())
        };
        let include_all = ["*".to_string()];
        let include = if include.is_empty() {
            &include_all[..]
        } else {
            include
        };
        Ok(TableSelection {
            include: build(include)?,
            exclude: build(exclude)?,
            literals: include
                .iter()
                .filter(|p| !p.contains(['*', '?', '[', '{']))
                .cloned()
                .collect(),
        })
    }

    /// Whether `name` (or `namespace.name`) is selected.
    pub fn matches(&self, name: &str) -> bool {
        self.include.is_match(name) && !self.exclude.is_match(name)
    }

    /// Tables named literally in `include` that are not in `found`.
    pub fn missing<'a>(&'a self, found: &[String]) -> Vec<&'a str> {
        self.literals
            .iter()
            .filter(|l| !found.iter().any(|f| f == *l))
            .map(String::as_str)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn include_and_exclude() {
        let sel = TableSelection::new(
            &["order*".into(), "customers".into()],
            &["orders_old".into()],
        )
        .unwrap();
        assert!(sel.matches("orders"));
        assert!(sel.matches("customers"));
        assert!(!sel.matches("orders_old"));
        assert!(!sel.matches("products"));
        assert_eq!(sel.missing(&["orders".into()]), vec!["customers"]);
        assert!(TableSelection::new(&[], &[]).unwrap().matches("anything"));
        assert!(
            TableSelection::new(&["[".into()], &[])
                .unwrap_err()
                .contains("bad table pattern")
        );
    }
}
