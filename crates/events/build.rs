//! Generates the prost types of `proto/omnilog/v1` with the vendored protoc, so a
//! fresh machine builds with cargo alone.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read when the script runs, not compiled in (`env!`): cargo names build scripts by a
    // hash of the package's path relative to its workspace, so two checkouts of this
    // workspace sharing one target directory share one compiled script and one OUT_DIR, and
    // each must generate from its own `proto/`.
    let manifest_dir =
        std::env::var_os("CARGO_MANIFEST_DIR").ok_or("cargo did not set CARGO_MANIFEST_DIR")?;
    let proto_root = std::path::Path::new(&manifest_dir).join("../../proto");
    let event_proto = proto_root.join("omnilog/v1/event.proto");
    println!("cargo:rerun-if-changed={}", event_proto.display());

    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let include = protoc_bin_vendored::include_path()?;
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc);
    // BTreeMap keeps encoding deterministic: the same event always has the same bytes.
    config.btree_map(["."]);
    config.compile_protos(&[event_proto], &[proto_root, include])?;
    Ok(())
}
