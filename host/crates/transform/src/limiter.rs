//! One memory budget per plugin instance. wasmtime's own `StoreLimits`
//! caps each linear memory on its own: a component declaring sixteen
//! memories could hold sixteen times the cap, and tables grew without
//! bound. Here every memory and every table of the store draws on the same
//! budget, and the number of instances, memories and tables is bounded.

use wasmtime::ResourceLimiter;

/// Instances a store may create: a component is a few core instances.
const MAX_INSTANCES: usize = 64;
/// Tables a store may create.
const MAX_TABLES: usize = 64;
/// Linear memories a store may create (a plugin has one or two).
const MAX_MEMORIES: usize = 16;
/// What one table slot is charged: a host pointer.
const TABLE_SLOT_BYTES: usize = 8;

/// A plugin instance tried to hold more than its budget.
#[derive(Debug, thiserror::Error)]
#[error("{what} would take the instance to {wanted} bytes, over its limit of {budget} bytes")]
pub(crate) struct OverBudget {
    what: &'static str,
    wanted: usize,
    budget: usize,
}

/// The store's limiter: memories and tables summed against one budget.
#[derive(Debug)]
pub(crate) struct SandboxLimiter {
    budget: usize,
    used: usize,
}

impl SandboxLimiter {
    /// A limiter allowing `budget` bytes of memories and tables in all.
    pub(crate) fn new(budget: usize) -> Self {
        SandboxLimiter { budget, used: 0 }
    }

    /// Charges `more` bytes; a refusal traps the plugin (an error, not a
    /// `false` that the guest's allocator would turn into a panic).
    fn charge(&mut self, what: &'static str, more: usize) -> wasmtime::Result<bool> {
        let wanted = self.used.saturating_add(more);
        if wanted > self.budget {
            return Err(wasmtime::Error::new(OverBudget {
                what,
                wanted,
                budget: self.budget,
            }));
        }
        self.used = wanted;
        Ok(true)
    }
}

impl ResourceLimiter for SandboxLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.charge("growing a memory", desired.saturating_sub(current))
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let slots = desired.saturating_sub(current);
        self.charge("growing a table", slots.saturating_mul(TABLE_SLOT_BYTES))
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::{Engine, Instance, Module, Store};

    const MIB: usize = 1 << 20;

    fn store(engine: &Engine, budget: usize) -> Store<SandboxLimiter> {
        let mut store = Store::new(engine, SandboxLimiter::new(budget));
        store.limiter(|limiter| limiter);
        store
    }

    fn module(engine: &Engine, wat: &str) -> Module {
        let bytes = wat::parse_str(wat).expect("valid WAT");
        Module::new(engine, bytes).expect("module compiles")
    }

    fn over_budget(e: &wasmtime::Error) -> bool {
        e.downcast_ref::<OverBudget>().is_some() || format!("{e:?}").contains("over its limit")
    }

    #[test]
    fn many_memories_share_one_budget() {
        let engine = Engine::default();
        // Sixteen memories of 1 MiB each: each under a 4 MiB cap, together
        // four times over it.
        let memories: String = (0..16).map(|_| "(memory 16)").collect();
        let many = module(&engine, &format!("(module {memories})"));
        let err = Instance::new(&mut store(&engine, 4 * MIB), &many, &[])
            .expect_err("16 MiB of memories under a 4 MiB budget");
        assert!(over_budget(&err), "{err:?}");
        // Three fit.
        let three = module(&engine, "(module (memory 16) (memory 16) (memory 16))");
        Instance::new(&mut store(&engine, 4 * MIB), &three, &[]).expect("3 MiB fits");
    }

    #[test]
    fn a_growing_table_hits_the_budget() {
        let engine = Engine::default();
        let grower = module(
            &engine,
            r#"(module
                 (table 1 funcref)
                 (func (export "grow")
                   (loop $more
                     (br_if $more (i32.ne (table.grow (ref.null func) (i32.const 65536)) (i32.const -1))))))"#,
        );
        let mut store = store(&engine, MIB);
        let instance = Instance::new(&mut store, &grower, &[]).expect("instantiates");
        let grow = instance
            .get_typed_func::<(), ()>(&mut store, "grow")
            .expect("export");
        let err = grow
            .call(&mut store, ())
            .expect_err("a table cannot grow without bound");
        assert!(over_budget(&err), "{err:?}");
        assert!(store.data().used <= MIB);
    }

    #[test]
    fn memory_and_tables_add_up() {
        let engine = Engine::default();
        // 3 MiB of memory and a 1 MiB table (131072 slots) overfill 4 MiB
        // only together.
        let both = module(&engine, "(module (memory 48) (table 131073 funcref))");
        let err = Instance::new(&mut store(&engine, 4 * MIB), &both, &[])
            .expect_err("memory and table together are over the budget");
        assert!(over_budget(&err), "{err:?}");
    }
}
