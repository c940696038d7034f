//! Sets the linker flags a Node.js addon needs (notably on macOS).
fn main() {
    napi_build::setup();
}
