//! Generates the prost types of `proto/omnilog/v1` with the vendored protoc, so a
//! fresh machine builds with cargo alone.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
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
