//! The committed header is what cbindgen generates from the source today,
//! carries version macros matching Cargo's version, and documents every
//! exported function.

use std::path::Path;

fn version_macros() -> String {
    let major: u32 = env!("CARGO_PKG_VERSION_MAJOR").parse().unwrap();
    let minor: u32 = env!("CARGO_PKG_VERSION_MINOR").parse().unwrap();
    let patch: u32 = env!("CARGO_PKG_VERSION_PATCH").parse().unwrap();
    format!(
        "\n#define CW_VERSION_MAJOR {major}\n#define CW_VERSION_MINOR {minor}\n#define CW_VERSION_PATCH {patch}\n\
         #define CW_VERSION_STRING \"{}\"\n\
         /* MAJOR * 10000 + MINOR * 100 + PATCH */\n#define CW_VERSION_NUMBER {}\n",
        env!("CARGO_PKG_VERSION"),
        major * 10000 + minor * 100 + patch
    )
}

fn generate() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("cbindgen.toml");
    let mut out = Vec::new();
    cbindgen::Builder::new()
        .with_config(config)
        .with_src(root.join("src/ffi.rs"))
        .with_after_include(version_macros())
        .generate()
        .expect("cbindgen generates the header")
        .write(&mut out);
    String::from_utf8(out).expect("UTF-8 header")
}

fn committed_path() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("include/corewal.h")
}

#[test]
fn committed_header_matches_a_fresh_generation() {
    let fresh = generate();
    if std::env::var_os("COREWAL_BLESS").is_some() {
        std::fs::write(committed_path(), &fresh).unwrap();
    }
    let committed = std::fs::read_to_string(committed_path()).unwrap_or_default();
    assert!(
        committed == fresh,
        "include/corewal.h is stale; regenerate with: COREWAL_BLESS=1 cargo test --release --test header"
    );
}

#[test]
fn header_version_macros_follow_cargo() {
    let header = std::fs::read_to_string(committed_path()).unwrap();
    for line in version_macros()
        .lines()
        .filter(|l| l.starts_with("#define"))
    {
        assert!(header.contains(line), "missing `{line}`");
    }
}

/// Every `cw_...(` declaration is preceded by a comment that says who may
/// call it concurrently.
#[test]
fn every_exported_function_is_documented() {
    let header = std::fs::read_to_string(committed_path()).unwrap();
    let lines: Vec<&str> = header.lines().collect();
    let mut functions = 0;
    for (i, line) in lines.iter().enumerate() {
        if line.starts_with([' ', '#', '/']) || line.starts_with("typedef") {
            continue;
        }
        let Some((before, _)) = line.split_once('(') else {
            continue;
        };
        let name = before
            .split_whitespace()
            .last()
            .unwrap_or("")
            .trim_start_matches('*');
        if !name.starts_with("cw_") {
            continue;
        }
        functions += 1;
        let mut doc = Vec::new();
        let mut j = i;
        while j > 0 && lines[j - 1].trim_start().starts_with(['*', '/']) {
            j -= 1;
            doc.push(lines[j]);
        }
        let doc = doc.join("\n");
        assert!(!doc.is_empty(), "{name} has no doc comment");
        assert!(
            doc.contains("Thread safety"),
            "{name}'s doc does not say who may call it concurrently"
        );
    }
    assert!(
        functions >= 27,
        "found only {functions} functions; is the parser broken?"
    );
}
