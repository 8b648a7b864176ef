//! Generated from `wit/transform.wit`. Plugin authors use the types the
//! crate root re-exports; this module is for the export macro.

wit_bindgen::generate!({
    world: "plugin",
    path: "../wit",
    pub_export_macro: true,
    default_bindings_module: "dmp_sdk::bindings",
    additional_derives: [PartialEq],
});
