//! Map states (inline): where the items come from, the item selector, the processor, the
//! concurrency, the tolerated failures, batching.

use serde_json::{Map, Value};

use super::fields::{Ctx, jtemplate, number, opt_path, payload, seconds};
use super::{Batcher, Branch, Kind, Lang, MapSpec, Payload, State, parse_branch};

pub(super) fn parse(
    m: &Map<String, Value>,
    state: &mut State,
    cx: &mut Ctx,
    depth: usize,
    inherited: Lang,
) -> Option<Kind> {
    let name = state.name.clone();
    let name = name.as_str();
    let lang = state.lang;
    if m.contains_key("ItemReader") || m.contains_key("ResultWriter") {
        cx.err(
            Some(name),
            "ItemReader",
            "distributed Map (ItemReader/ResultWriter) is not supported; use an inline Map",
        );
    }
    let processor = processor(m, name, cx, depth, inherited)?;
    if m.contains_key("ItemSelector") && m.contains_key("Parameters") {
        cx.err(
            Some(name),
            "ItemSelector",
            "use ItemSelector or Parameters, not both",
        );
    }
    // For Map, the older `Parameters` is the item selector, not the state's Parameters.
    let item_selector = payload(m, lang, "ItemSelector", name, cx)
        .or_else(|| state.parameters.take().map(Payload::Path));
    let items_path = match lang {
        Lang::JsonPath => opt_path(m, "ItemsPath", name, cx, false).unwrap_or(None),
        Lang::Jsonata => None,
    };
    let items = jtemplate(m, "Items", name, cx);
    let max_concurrency = match seconds(m, "MaxConcurrency", lang, name, cx, (0, u64::MAX)) {
        super::Seconds::Fixed(0) => super::Seconds::None,
        s => s,
    };
    let tolerated_percent = number(
        m,
        "ToleratedFailurePercentage",
        lang,
        name,
        cx,
        (0.0, 100.0),
    );
    let tolerated_count = number(m, "ToleratedFailureCount", lang, name, cx, (0.0, f64::MAX));
    let batcher = match m.get("ItemBatcher") {
        None => None,
        Some(Value::Object(b)) => batcher(b, lang, name, cx),
        Some(_) => {
            cx.err(Some(name), "ItemBatcher", "must be an object");
            None
        }
    };
    Some(Kind::Map(Box::new(MapSpec {
        items_path,
        items,
        item_selector,
        processor,
        max_concurrency,
        tolerated_percent,
        tolerated_count,
        batcher,
    })))
}

/// The Map's ItemProcessor (or the older Iterator): an inline branch.
fn processor(
    m: &Map<String, Value>,
    name: &str,
    cx: &mut Ctx,
    depth: usize,
    inherited: Lang,
) -> Option<Branch> {
    let (field, proc_value) = match (m.get("ItemProcessor"), m.get("Iterator")) {
        (Some(_), Some(_)) => {
            cx.err(
                Some(name),
                "ItemProcessor",
                "use ItemProcessor or Iterator, not both",
            );
            return None;
        }
        (Some(p), None) => ("ItemProcessor", p),
        (None, Some(p)) => ("Iterator", p),
        (None, None) => {
            cx.err(
                Some(name),
                "ItemProcessor",
                "a Map state needs ItemProcessor (or Iterator)",
            );
            return None;
        }
    };
    let Value::Object(pm) = proc_value else {
        cx.err(Some(name), field, "must be an object");
        return None;
    };
    let mut pm = pm.clone();
    if let Some(cfg) = pm.remove("ProcessorConfig") {
        let mode = cfg.get("Mode").and_then(Value::as_str).unwrap_or("INLINE");
        if mode != "INLINE" {
            cx.err(
                Some(name),
                &format!("{field}.ProcessorConfig.Mode"),
                "only INLINE Map is supported",
            );
        }
    }
    for k in pm.keys() {
        if !["StartAt", "States", "Comment", "QueryLanguage"].contains(&k.as_str()) {
            cx.err(
                Some(name),
                &format!("{field}.{k}"),
                format!("unknown field {k:?}"),
            );
        }
    }
    parse_branch(&pm, cx, &format!("{name}.{field}."), depth + 1, inherited)
}

fn batcher(b: &Map<String, Value>, lang: Lang, name: &str, cx: &mut Ctx) -> Option<Batcher> {
    for k in b.keys() {
        if ![
            "MaxItemsPerBatch",
            "MaxInputBytesPerBatch",
            "BatchInput",
            "MaxItemsPerBatchPath",
            "MaxInputBytesPerBatchPath",
        ]
        .contains(&k.as_str())
        {
            cx.err(
                Some(name),
                &format!("ItemBatcher.{k}"),
                format!("unknown field {k:?}"),
            );
        }
    }
    let max_items = b.get("MaxItemsPerBatch").and_then(Value::as_u64);
    let max_bytes = b.get("MaxInputBytesPerBatch").and_then(Value::as_u64);
    if max_items.is_none() && max_bytes.is_none() {
        cx.err(
            Some(name),
            "ItemBatcher",
            "needs MaxItemsPerBatch or MaxInputBytesPerBatch (a positive integer)",
        );
    }
    if max_items == Some(0) || max_bytes == Some(0) {
        cx.err(Some(name), "ItemBatcher", "batch limits must be positive");
    }
    Some(Batcher {
        max_items,
        max_bytes,
        batch_input: payload(b, lang, "BatchInput", name, cx),
    })
}
