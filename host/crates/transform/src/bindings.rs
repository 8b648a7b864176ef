//! Host bindings generated from `wit/transform.wit`: the one place that
//! runs `bindgen!`.

wasmtime::component::bindgen!({
    path: "../../../wit",
    world: "plugin",
});

pub use dmp::transform::host::Level;
pub use dmp::transform::types as wit;
