//! A minimal JSON Schema (draft 2020-12) validator for the keywords the files in `schema/` use: `type`
//! (one name or a list), `const`, `enum`, `properties`, `required`, `additionalProperties` (boolean or
//! schema), `items`, `anyOf`, `$ref` to `#/$defs/NAME`; annotations (`$schema`, `$id`, `title`, `description`) are
//! ignored. The general-purpose validators pull in URL and Unicode-normalisation stacks (idna, icu) for
//! remote references these schemas do not have; an unknown keyword is an error here, so a schema cannot
//! silently use one this validator would skip.

use serde_json::Value;

const ANNOTATIONS: [&str; 5] = ["$schema", "$id", "title", "description", "$defs"];

/// Every violation of `schema` by `v`, each as "PATH: what", empty when `v` is valid.
pub fn validate(schema: &Value, v: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    check(schema, schema, v, "$", &mut errors);
    errors
}

fn type_ok(name: &str, v: &Value) -> bool {
    match name {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        "number" => v.is_number(),
        "integer" => v.is_u64() || v.is_i64() || v.as_f64().is_some_and(|x| x.fract() == 0.0),
        other => panic!("schema: unknown type {other}"),
    }
}

fn check(root: &Value, s: &Value, v: &Value, path: &str, errors: &mut Vec<String>) {
    let s = match s {
        Value::Bool(true) => return,
        Value::Bool(false) => {
            errors.push(format!("{path}: not allowed"));
            return;
        }
        Value::Object(m) => m,
        _ => panic!("schema at {path}: not an object or boolean"),
    };
    for (k, kw) in s {
        match k.as_str() {
            "$ref" => {
                let r = kw.as_str().expect("$ref is a string");
                let name = r
                    .strip_prefix("#/$defs/")
                    .unwrap_or_else(|| panic!("schema: only #/$defs/ references: {r}"));
                let target = &root["$defs"][name];
                assert!(!target.is_null(), "schema: undefined {r}");
                check(root, target, v, path, errors);
            }
            "type" => {
                let names: Vec<&str> = match kw {
                    Value::String(t) => vec![t],
                    Value::Array(ts) => ts.iter().map(|t| t.as_str().expect("type")).collect(),
                    _ => panic!("schema: bad type at {path}"),
                };
                if !names.iter().any(|t| type_ok(t, v)) {
                    errors.push(format!("{path}: expected {names:?}, found {v}"));
                }
            }
            "anyOf" => {
                let branches = kw.as_array().expect("anyOf");
                let ok = branches.iter().any(|b| {
                    let mut e = Vec::new();
                    check(root, b, v, path, &mut e);
                    e.is_empty()
                });
                if !ok {
                    errors.push(format!("{path}: matches no branch of anyOf"));
                }
            }
            "const" => {
                if kw != v {
                    errors.push(format!("{path}: expected {kw}, found {v}"));
                }
            }
            "enum" => {
                if !kw.as_array().expect("enum").contains(v) {
                    errors.push(format!("{path}: {v} not one of {kw}"));
                }
            }
            "required" => {
                if let Some(o) = v.as_object() {
                    for r in kw.as_array().expect("required") {
                        let r = r.as_str().expect("required names");
                        if !o.contains_key(r) {
                            errors.push(format!("{path}: missing required \"{r}\""));
                        }
                    }
                }
            }
            "properties" => {
                if let Some(o) = v.as_object() {
                    for (name, sub) in kw.as_object().expect("properties") {
                        if let Some(x) = o.get(name) {
                            check(root, sub, x, &format!("{path}.{name}"), errors);
                        }
                    }
                }
            }
            "additionalProperties" => {
                if let Some(o) = v.as_object() {
                    let known = s.get("properties").and_then(Value::as_object);
                    for (name, x) in o {
                        if !known.is_some_and(|p| p.contains_key(name)) {
                            match kw {
                                Value::Bool(false) => {
                                    errors.push(format!("{path}: unexpected property \"{name}\""))
                                }
                                sub => check(root, sub, x, &format!("{path}.{name}"), errors),
                            }
                        }
                    }
                }
            }
            "items" => {
                if let Some(a) = v.as_array() {
                    for (i, x) in a.iter().enumerate() {
                        check(root, kw, x, &format!("{path}[{i}]"), errors);
                    }
                }
            }
            k if ANNOTATIONS.contains(&k) => {}
            other => panic!("schema at {path}: keyword {other} is not supported by this validator"),
        }
    }
}
