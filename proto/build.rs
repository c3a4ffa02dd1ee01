//! Compiles `proto/*.proto` into Rust with protox (a pure-Rust protobuf compiler, so no system
//! `protoc` is needed) and tonic-prost-build.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/sovereign.proto"];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(protos, ["proto"])?;
    // Chunk payloads as `bytes::Bytes`: decoded as views of the received buffer, not copied.
    tonic_prost_build::configure()
        .bytes(".sovereign.v1.Chunk.data")
        .bytes(".sovereign.v1.DataChunk.data")
        .bytes(".sovereign.v1.ResultChunk.data")
        .compile_fds(descriptors)?;
    Ok(())
}
