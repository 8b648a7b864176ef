//! Host bindings generated from `wit/transform.wit`: the one place that
//! runs `bindgen!`.

wasmtime::component::bindgen!({
    path: "../../../wit",
    world: "plugin",
});

pub use dmp::transform::host::Level;
pub use dmp::transform::types as wit;

/// The `resolver` world. It shares `types` and `host` with `plugin`: one
/// set of value types, one host implementation and one linker serve both.
pub mod resolver {
    wasmtime::component::bindgen!({
        path: "../../../wit",
        world: "resolver",
        with: {
            "dmp:transform/types": super::dmp::transform::types,
            "dmp:transform/host": super::dmp::transform::host,
        },
    });

    pub use exports::dmp::transform::resolve as wit;
}
