//! The exact bounds of a query in the OpenAPI document, which utoipa's derive cannot say:
//! a query is one of nine shapes keyed on its kind (the kind's name in any letter case,
//! hex of that kind's length, a quality only for PDQ), and the single-hash GET is one path
//! per kind. Partners who generate clients from the document get the real rules, and a
//! schema-driven fuzzer (schemathesis) finds the document and the service in agreement.
//! Hand-written over the JSON: it rewrites three places of the generated document.

use serde_json::{Value, json};

use crate::kinds::HashKind;

/// `^[mM][dD]5$` for `md5`: the kind's name, case-insensitively, as the parser takes it
/// (JSON Schema patterns have no case-insensitive flag).
fn kind_pattern(kind: HashKind) -> String {
    let letters: String = kind
        .name()
        .chars()
        .map(|c| {
            if c.is_ascii_alphabetic() {
                format!("[{}{}]", c.to_ascii_lowercase(), c.to_ascii_uppercase())
            } else {
                c.to_string()
            }
        })
        .collect();
    format!("^{letters}$")
}

fn hash_schema(kind: HashKind) -> Value {
    let digits = kind.byte_len() * 2;
    json!({
        "type": "string",
        "pattern": format!("^[0-9a-fA-F]{{{digits}}}$"),
        "description": format!("{digits} hex digits (either case)"),
    })
}

fn quality_schema() -> Value {
    json!({
        "type": ["integer", "null"],
        "minimum": 0,
        "maximum": 100,
        "description": "PDQ quality (0-100); under 50 gives verdict `low_quality`",
    })
}

/// One query: a `oneOf` over the kinds.
fn query_schema() -> Value {
    let variants: Vec<Value> = HashKind::QUERY
        .iter()
        .map(|&kind| {
            let mut properties = json!({
                "kind": {
                    "type": "string",
                    "pattern": kind_pattern(kind),
                    "description": format!("`{}` (any letter case)", kind.name()),
                },
                "hash": hash_schema(kind),
            });
            if kind == HashKind::Pdq {
                properties["quality"] = quality_schema();
            }
            json!({
                "title": format!("{} query", kind.name()),
                "type": "object",
                "required": ["kind", "hash"],
                "additionalProperties": false,
                "properties": properties,
            })
        })
        .collect();
    json!({ "description": "One hash to look up.", "oneOf": variants })
}

/// Rewrites the generated document `doc` with the exact query rules.
pub(super) fn refine(doc: &mut Value) {
    if let Some(schemas) = doc.pointer_mut("/components/schemas")
        && let Some(map) = schemas.as_object_mut()
    {
        map.insert("QueryIn".into(), query_schema());
        if let Some(prefixes) = map
            .get_mut("UrlPrefixRequest")
            .and_then(|s| s.pointer_mut("/properties/prefixes"))
        {
            let digits = 2 * crate::wire::URL_PREFIX_BYTES;
            *prefixes = json!({
                "type": "array",
                "description": "The first 4 bytes of each url expression hash",
                "items": {
                    "type": "string",
                    "pattern": format!("^[0-9a-fA-F]{{{digits}}}$"),
                    "description": format!("{digits} hex digits (either case)"),
                },
            });
        }
    }
    // The single GET, one path per kind.
    let generic = "/v1/match/{kind}/{hash}";
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut)
        && let Some(item) = paths.remove(generic)
    {
        for kind in HashKind::QUERY {
            let mut item = item.clone();
            if let Some(get) = item.get_mut("get") {
                if let Some(id) = get.get("operationId").and_then(Value::as_str) {
                    get["operationId"] = json!(format!("{id}_{}", kind.name()));
                }
                if let Some(params) = get.get_mut("parameters").and_then(Value::as_array_mut) {
                    params.retain(|p| {
                        p["name"] != "kind" && (kind == HashKind::Pdq || p["name"] != "quality")
                    });
                    for p in params.iter_mut().filter(|p| p["name"] == "hash") {
                        p["schema"] = hash_schema(kind);
                        p["description"] = json!(format!("the {} hash", kind.name()));
                    }
                }
            }
            paths.insert(format!("/v1/match/{}/{{hash}}", kind.name()), item);
        }
    }
    // NDJSON bodies are text; declared as text/plain too, so that tools that cannot make
    // `application/x-ndjson` (the service takes either) can send them.
    if let Some(content) = doc.pointer_mut("/paths/~1v1~1match~1ndjson/post/requestBody/content")
        && let Some(map) = content.as_object_mut()
        && let Some(ndjson) = map.get_mut("application/x-ndjson")
    {
        // At least one line: an empty body is refused.
        ndjson["schema"]["minLength"] = json!(1);
        let ndjson = ndjson.clone();
        map.insert("text/plain".into(), ndjson);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_patterns_take_any_case_and_nothing_else() {
        assert_eq!(kind_pattern(HashKind::Md5), "^[mM][dD]5$");
        assert_eq!(kind_pattern(HashKind::Sha256), "^[sS][hH][aA]256$");
        let q = query_schema();
        assert_eq!(q["oneOf"].as_array().unwrap().len(), HashKind::QUERY.len());
        let pdq = &q["oneOf"][4];
        assert_eq!(pdq["properties"]["hash"]["pattern"], "^[0-9a-fA-F]{64}$");
        assert!(pdq["properties"].get("quality").is_some());
        assert!(q["oneOf"][0]["properties"].get("quality").is_none());
    }
}
