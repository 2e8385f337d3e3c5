//! `docs/config.md`, the configuration reference, is generated from the configuration types:
//! every key of every section with its default (from `Config::new`) and its meaning (the field's
//! doc comment). This test fails when the file differs from what the types say;
//! `MAILROOM_BLESS=1 cargo test -p mailroom-config --test reference` writes it.

use std::collections::BTreeMap;

/// A struct's doc and its fields (name, doc, type name), from the source.
struct Struct {
    doc: String,
    fields: Vec<(String, String, String)>,
}

fn doc_of(attrs: &[syn::Attribute]) -> String {
    let mut lines = Vec::new();
    for a in attrs {
        if !a.path().is_ident("doc") {
            continue;
        }
        if let syn::Meta::NameValue(nv) = &a.meta {
            if let syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(s),
                ..
            }) = &nv.value
            {
                lines.push(s.value().trim().to_string());
            }
        }
    }
    lines.join(" ").trim().to_string()
}

/// The innermost type name: `Option<Vec<Foo>>` → the last path segment of what it wraps.
fn type_name(ty: &syn::Type) -> String {
    if let syn::Type::Path(p) = ty {
        if let Some(seg) = p.path.segments.last() {
            let name = seg.ident.to_string();
            if let syn::PathArguments::AngleBracketed(args) = &seg.arguments {
                if name == "Option" || name == "BTreeMap" {
                    if let Some(syn::GenericArgument::Type(t)) = args.args.iter().last() {
                        return type_name(t);
                    }
                }
            }
            return name;
        }
    }
    String::new()
}

fn structs() -> BTreeMap<String, Struct> {
    let mut out = BTreeMap::new();
    for file in ["lib.rs", "security.rs", "registrations.rs"] {
        let path = format!("{}/src/{file}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap();
        let ast = syn::parse_file(&text).unwrap();
        for item in ast.items {
            if let syn::Item::Struct(s) = item {
                let fields = s
                    .fields
                    .iter()
                    .filter_map(|f| {
                        Some((
                            f.ident.as_ref()?.to_string(),
                            doc_of(&f.attrs),
                            type_name(&f.ty),
                        ))
                    })
                    .collect();
                out.insert(
                    s.ident.to_string(),
                    Struct {
                        doc: doc_of(&s.attrs),
                        fields,
                    },
                );
            }
        }
    }
    out
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// The defaults of a table that a section holds as an option (absent from `Config::new`).
fn nested_defaults(ty: &str) -> Option<toml::Table> {
    match ty {
        "AcmeConfig" => toml::Table::try_from(mailroom_config::AcmeConfig::default()).ok(),
        _ => None,
    }
}

fn render() -> String {
    let structs = structs();
    let defaults = toml::Value::try_from(mailroom_config::Config::new(
        "example.com",
        "mail.example.com",
    ))
    .unwrap();
    let mut out = String::from(
        "# Configuration reference\n\n\
         Every key of `mailroom.toml`, section by section, with its default and its meaning. This \
         file is generated from the configuration types (`crates/config`): their doc comments \
         and `Config::new`'s defaults (for a server `mail.example.com` of `example.com`). Do not \
         edit it; `MAILROOM_BLESS=1 cargo test -p mailroom-config --test reference` writes it \
         again, and the test fails when it is stale.\n\n\
         `mailroom config show` prints the configuration in effect; `mailroom config show \
         --non-default` only what differs from these defaults. Durations are written like \
         `\"30s\"`, `\"5m\"`, `\"2h\"`.\n",
    );
    let top = &structs["Config"];
    for (section, sdoc, ty) in &top.fields {
        let Some(st) = structs.get(ty) else {
            continue;
        };
        let (title, table) = if section == "services" {
            let t = defaults.get("services").and_then(|s| s.get("smtp-receive"));
            ("services.NAME".to_string(), t)
        } else {
            (section.clone(), defaults.get(section))
        };
        out.push_str(&format!("\n## `[{title}]`\n\n{}\n", cell(sdoc)));
        // (A struct's doc starts with its section's name: said by the heading already.)
        let own = st
            .doc
            .strip_prefix(&format!("`[{section}]`"))
            .map(|d| d.trim_start_matches(':').trim())
            .unwrap_or(&st.doc);
        if !own.is_empty() {
            let mut c = own.chars();
            let first = c
                .next()
                .map(|f| f.to_uppercase().to_string())
                .unwrap_or_default();
            out.push_str(&format!("\n{first}{}\n", cell(c.as_str())));
        }
        out.push_str("\n| Key | Default | Meaning |\n|---|---|---|\n");
        for (key, doc, ty) in &st.fields {
            let default = table
                .and_then(|t| t.get(key))
                .map(|v| format!("`{}`", cell(&v.to_string())))
                .unwrap_or_else(|| "(none)".into());
            out.push_str(&format!(
                "| `{title}.{key}` | {default} | {} |\n",
                cell(doc)
            ));
            // An optional table inside the section (`[tls.acme]`): its keys, with the defaults
            // they take when the table is given.
            if let (Some(inner), Some(defaults)) = (structs.get(ty), nested_defaults(ty)) {
                for (k, d, _) in &inner.fields {
                    let default = defaults
                        .get(k)
                        .map(|v| format!("`{}`", cell(&v.to_string())))
                        .unwrap_or_else(|| "(none)".into());
                    out.push_str(&format!(
                        "| `{title}.{key}.{k}` | {default} | {} |\n",
                        cell(d)
                    ));
                }
            }
        }
    }
    out
}

#[test]
fn the_configuration_reference_is_generated_from_the_types() {
    let path = format!("{}/../../docs/config.md", env!("CARGO_MANIFEST_DIR"));
    let want = render();
    if std::env::var_os("MAILROOM_BLESS").is_some() {
        std::fs::write(&path, &want).unwrap();
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "docs/config.md is stale (MAILROOM_BLESS=1 cargo test -p mailroom-config --test reference writes it)"
    );
}

/// Every key that a default configuration has is in the reference (a section whose type the
/// generator cannot find would be missing).
#[test]
fn every_key_is_in_the_reference() {
    let text = render();
    let defaults = toml::Value::try_from(mailroom_config::Config::new(
        "example.com",
        "mail.example.com",
    ))
    .unwrap();
    for (section, table) in defaults.as_table().unwrap() {
        if section == "services" {
            continue;
        }
        for key in table.as_table().unwrap().keys() {
            assert!(
                text.contains(&format!("`{section}.{key}`")),
                "{section}.{key}"
            );
        }
    }
}
