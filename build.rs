//! Names the target the binary was built for (`meshnode --version`): an operator with a
//! Pi 1 can tell an ARMv6 build from an ARMv7 one.
fn main() {
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".into());
    println!("cargo:rustc-env=MESHNODE_TARGET={target}");
    println!("cargo:rerun-if-changed=build.rs");
}
