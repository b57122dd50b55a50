//! A shared library that is not an eventhost plugin.

#[unsafe(no_mangle)]
pub extern "C" fn not_a_plugin_answer() -> u32 {
    42
}
