//! Gives the shared library a SONAME carrying the major version
//! (`libcorewal.so.<major>`), so programs linked against one major version
//! never load another.
fn main() {
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").expect("cargo sets the version");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libcorewal.so.{major}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
