//! Generated from `wit/transform.wit`, world `resolver`. It shares `types`
//! and `host` with the `plugin` world's bindings, so a resolver sees the
//! same [`crate::Value`] and [`crate::TableSchema`] as a transform. Only
//! the export macro a plugin calls adds its world's exports, so a plugin
//! built with this crate exports a transform or a resolver, not both.

wit_bindgen::generate!({
    world: "resolver",
    path: "../wit",
    pub_export_macro: true,
    default_bindings_module: "dmp_sdk::resolver_bindings",
    additional_derives: [PartialEq],
    with: {
        "dmp:transform/types@0.1.0": crate::bindings::dmp::transform::types,
        "dmp:transform/host@0.1.0": crate::bindings::dmp::transform::host,
    },
});
