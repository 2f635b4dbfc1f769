//! Workflow variables (`Assign`, `$name`), in both query languages.
//!
//! The top-level states of an execution share one scope. Each Parallel branch and each Map
//! iteration runs in a scope of its own whose parent is the scope of the state that started
//! it: it reads the outer variables and assigns only its own (the outer ones are not
//! changed). A state's assignments take effect when it ends: every reference in the state,
//! `Output` included, reads the values from when it was entered.
//!
//! A scope is a plain map owned by the loop that runs its branch, and a child borrows its
//! parent: nothing is copied per state, and a definition without `Assign` pays nothing.

use serde_json::{Map, Value};

/// Most bytes one state may assign (the values' JSON text), as AWS limits them.
pub(crate) const MAX_ASSIGN_BYTES: usize = 256 * 1024;
/// Most bytes of variables one execution may hold at once, as AWS limits them.
pub(crate) const MAX_TOTAL_BYTES: usize = 10 * 1024 * 1024;

/// The variables one branch sees.
#[derive(Debug, Default)]
pub(crate) struct Vars<'p> {
    /// Assigned in this scope.
    pub own: Map<String, Value>,
    /// The enclosing scope (a Map iteration's or Parallel branch's), read-only here.
    pub parent: Option<&'p Vars<'p>>,
    /// The JSON size of `own`, kept as values are assigned.
    bytes: usize,
}

impl<'p> Vars<'p> {
    pub fn new(own: Map<String, Value>, parent: Option<&'p Vars<'p>>) -> Vars<'p> {
        let bytes = own.values().map(json_len).sum();
        Vars { own, parent, bytes }
    }

    /// The innermost variable named `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        let mut scope = Some(self);
        while let Some(s) = scope {
            if let Some(v) = s.own.get(name) {
                return Some(v);
            }
            scope = s.parent;
        }
        None
    }

    /// Applies a state's assignments; `Err` names a limit they break.
    pub fn assign(&mut self, values: Map<String, Value>) -> Result<(), String> {
        let size: usize = values.values().map(json_len).sum();
        if size > MAX_ASSIGN_BYTES {
            return Err(format!(
                "the state assigns {size} bytes of variables; at most {MAX_ASSIGN_BYTES}"
            ));
        }
        for (k, v) in values {
            if let Some(old) = self.own.insert(k, v) {
                self.bytes = self.bytes.saturating_sub(json_len(&old));
            }
        }
        self.bytes += size;
        if self.bytes > MAX_TOTAL_BYTES {
            return Err(format!(
                "the execution holds {} bytes of variables; at most {MAX_TOTAL_BYTES}",
                self.bytes
            ));
        }
        Ok(())
    }
}

fn json_len(v: &Value) -> usize {
    serde_json::to_string(v).map_or(0, |s| s.len())
}

/// A valid variable name: a letter or `_`, then letters, digits and `_` (as a JSONata
/// variable), at most 80 characters, and not `states` (reserved for `$states`).
pub(crate) fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 80
        && name != "states"
}
