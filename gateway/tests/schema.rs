//! The SDL served, the checked-in `schema.graphql`, and the published contract agree.

use std::collections::BTreeMap;
use std::path::PathBuf;

use async_graphql::parser::parse_schema;
use async_graphql::parser::types::{InputValueDefinition, TypeKind, TypeSystemDefinition};

fn schema_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../schema.graphql")
}

#[test]
fn schema_graphql_is_the_served_sdl() {
    let sdl = userlens_gateway::schema_sdl();
    let path = schema_file();
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        if let Err(error) = std::fs::write(&path, &sdl) {
            panic!("cannot write {}: {error}", path.display());
        }
        return;
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == sdl,
        "{} differs from the SDL the gateway serves; regenerate it with\n  \
         UPDATE_SCHEMA=1 cargo test -p userlens-gateway --test schema",
        path.display()
    );
}

fn input_value(value: &InputValueDefinition) -> String {
    match &value.default_value {
        Some(default) => format!("{}: {} = {}", value.name.node, value.ty.node, default.node),
        None => format!("{}: {}", value.name.node, value.ty.node),
    }
}

/// Every type, field (with arguments), input field and enum value of an SDL, as
/// `coordinate -> signature`.
fn signatures(sdl: &str) -> BTreeMap<String, String> {
    let document = match parse_schema(sdl) {
        Ok(document) => document,
        Err(error) => panic!("SDL does not parse: {error}"),
    };
    let mut signatures = BTreeMap::new();
    for definition in document.definitions {
        let TypeSystemDefinition::Type(definition) = definition else {
            continue;
        };
        let definition = definition.node;
        let name = definition.name.node.to_string();
        match definition.kind {
            TypeKind::Scalar => {
                signatures.insert(name, "scalar".to_owned());
            }
            TypeKind::Object(object) => {
                signatures.insert(name.clone(), "type".to_owned());
                for field in object.fields {
                    let field = field.node;
                    let arguments: Vec<String> = field
                        .arguments
                        .iter()
                        .map(|a| input_value(&a.node))
                        .collect();
                    signatures.insert(
                        format!("{name}.{}", field.name.node),
                        format!("({}): {}", arguments.join(", "), field.ty.node),
                    );
                }
            }
            TypeKind::InputObject(input) => {
                signatures.insert(name.clone(), "input".to_owned());
                for field in input.fields {
                    signatures.insert(
                        format!("{name}.{}", field.node.name.node),
                        input_value(&field.node),
                    );
                }
            }
            TypeKind::Enum(enumeration) => {
                signatures.insert(name.clone(), "enum".to_owned());
                for value in enumeration.values {
                    signatures.insert(
                        format!("{name}.{}", value.node.value.node),
                        "value".to_owned(),
                    );
                }
            }
            TypeKind::Interface(_) | TypeKind::Union(_) => {
                signatures.insert(name, "other".to_owned());
            }
        }
    }
    signatures
}

/// Names, shapes, nullability and argument defaults of the published contract are served
/// exactly; descriptions and additions are free.
#[test]
fn served_schema_honours_the_contract() {
    let contract = signatures(include_str!("contract.graphql"));
    let served = signatures(&userlens_gateway::schema_sdl());
    assert!(
        contract.len() > 150,
        "contract parsed to {} entries",
        contract.len()
    );
    let mismatches: Vec<String> = contract
        .iter()
        .filter(|(coordinate, signature)| served.get(*coordinate) != Some(signature))
        .map(|(coordinate, signature)| {
            format!(
                "{coordinate}: contract `{signature}`, served `{}`",
                served.get(coordinate).map_or("<missing>", String::as_str)
            )
        })
        .collect();
    assert!(
        mismatches.is_empty(),
        "contract mismatches:\n{}",
        mismatches.join("\n")
    );
}

#[test]
fn the_root_query_type_is_named_query() {
    let sdl = userlens_gateway::schema_sdl();
    assert!(sdl.contains("type Query {"));
    assert!(!sdl.contains("QueryRoot"));
}
