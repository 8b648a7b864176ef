//! An opened resolver: one plugin instance in its own store (memory cap,
//! time limit per call). A trap, a timeout or a memory overrun poisons the
//! instance: it is dropped, and the next conflict opens a fresh one with
//! the same settings, so one bad conflict does not take the rest down.

use std::sync::Arc;

use wasmtime::Store;
use wasmtime::component::ResourceAny;

use super::conflict::{Conflict, Resolution, Settled};
use super::error::ResolveError;
use super::plugin::ResolverPlugin;
use super::wire::{conflict_to_wit, resolution_from_wit};
use crate::bindings::resolver::Resolver;
use crate::host::HostState;
use crate::instance::{Failure, classify, deadline_ticks, sandboxed_store};
use crate::runtime::Limits;

/// A live instance and the `resolver` resource its `open` returned.
struct Live {
    store: Store<HostState>,
    bindings: Resolver,
    resolver: ResourceAny,
}

/// A resolver opened with its settings. Calls are synchronous and take a
/// few microseconds to the plugin's time limit: run them off the async
/// threads. One conflict at a time; open one per concurrent apply.
pub struct ConflictResolver {
    plugin: Arc<ResolverPlugin>,
    config: Vec<(String, String)>,
    limits: Limits,
    /// `None` once a trap poisoned the instance.
    live: Option<Live>,
}

impl ConflictResolver {
    pub(crate) fn open(
        plugin: Arc<ResolverPlugin>,
        config: Vec<(String, String)>,
        limits: Limits,
    ) -> Result<Self, ResolveError> {
        let live =
            Self::instantiate(&plugin, &config, &limits).map_err(|failure| ResolveError::Open {
                place: plugin.place.clone(),
                failure,
            })?;
        Ok(ConflictResolver {
            plugin,
            config,
            limits,
            live: Some(live),
        })
    }

    fn instantiate(
        plugin: &ResolverPlugin,
        config: &[(String, String)],
        limits: &Limits,
    ) -> Result<Live, Failure> {
        // The table is named per call: one resolver serves every table.
        let mut store = sandboxed_store(&plugin.engine, &plugin.name, &plugin.log, "", limits);
        let bindings = plugin
            .pre
            .instantiate(&mut store)
            .map_err(|e| classify(&store, &e))?;
        let opened = bindings
            .dmp_transform_resolve()
            .resolver()
            .call_open(&mut store, config)
            .map_err(|e| classify(&store, &e))?;
        let resolver = opened.map_err(Failure::refused)?;
        Ok(Live {
            store,
            bindings,
            resolver,
        })
    }

    /// The plugin this resolver runs.
    pub fn plugin(&self) -> &Arc<ResolverPlugin> {
        &self.plugin
    }

    /// Asks the plugin how to settle `conflict`. A conflict that does not
    /// fit its table is refused unasked; the plugin's error, a trap, its
    /// time or memory limit and a merged row the table cannot take are
    /// errors naming plugin, table and conflict kind.
    #[tracing::instrument(
        skip_all,
        fields(plugin = %self.plugin.name, table = %conflict.table.name, kind = %conflict.kind),
        err
    )]
    pub fn resolve(&mut self, conflict: &Conflict) -> Result<Resolution, ResolveError> {
        let table = conflict.table.qualified_name();
        conflict.check().map_err(|reason| ResolveError::Malformed {
            table: table.clone(),
            kind: conflict.kind,
            reason,
        })?;
        let answer = self
            .call(conflict, &table)
            .map_err(|failure| ResolveError::Call {
                place: self.plugin.place.clone(),
                table: table.clone(),
                kind: conflict.kind,
                failure,
            })?;
        resolution_from_wit(answer, &conflict.table, &conflict.key).map_err(|problem| {
            ResolveError::Merged {
                place: self.plugin.place.clone(),
                table: table.clone(),
                kind: conflict.kind,
                problem,
            }
        })
    }

    fn call(
        &mut self,
        conflict: &Conflict,
        table: &str,
    ) -> Result<crate::bindings::resolver::wit::Resolution, Failure> {
        let mut live = match self.live.take() {
            Some(live) => live,
            None => Self::instantiate(&self.plugin, &self.config, &self.limits)?,
        };
        live.store.set_epoch_deadline(deadline_ticks(&self.limits));
        let state = live.store.data_mut();
        state.last_error = None;
        table.clone_into(&mut state.table);
        let result = live
            .bindings
            .dmp_transform_resolve()
            .resolver()
            .call_resolve(&mut live.store, live.resolver, &conflict_to_wit(conflict));
        match result {
            // The plugin answered, even if with an error: the instance
            // stays usable.
            Ok(answer) => {
                self.live = Some(live);
                answer.map_err(Failure::refused)
            }
            // A trap leaves the instance unusable: it is dropped here.
            Err(e) => Err(classify(&live.store, &e)),
        }
    }

    /// Checks that the plugin is deterministic on `conflict`: asked for
    /// this leg, for the other leg ([`Conflict::mirrored`]) and for this leg
    /// again, both legs must settle on the same row (or both park) and the
    /// repeated answer must match the first. Returns what both legs are
    /// left with.
    pub fn check_converges(&mut self, conflict: &Conflict) -> Result<Settled, ResolveError> {
        let mirrored = conflict.mirrored();
        let this_leg = conflict.settle(&self.resolve(conflict)?);
        let other_leg = mirrored.settle(&self.resolve(&mirrored)?);
        let again = conflict.settle(&self.resolve(conflict)?);
        let place = || self.plugin.place.clone();
        let table = || conflict.table.qualified_name();
        if again != this_leg {
            return Err(ResolveError::Unrepeatable {
                place: place(),
                table: table(),
                kind: conflict.kind,
                first: this_leg,
                again,
            });
        }
        if other_leg != this_leg {
            return Err(ResolveError::Diverged {
                place: place(),
                table: table(),
                kind: conflict.kind,
                this_leg,
                other_leg,
            });
        }
        Ok(this_leg)
    }
}
