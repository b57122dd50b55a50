//! Links the plugin against the libpython of the interpreter pyo3 finds at
//! build time (`PYO3_PYTHON`, else an active virtualenv, else `python` or
//! `python3` on PATH), with that library's directory as the library's
//! RUNPATH: pyenv's and other non-system builds keep libpython outside the
//! loader's default directories, and the host loads the plugin with no
//! LD_LIBRARY_PATH. The interpreter's path is kept for error messages that
//! say how to rebuild for another Python.

fn main() {
    pyo3_build_config::add_libpython_rpath_link_args();
    let config = pyo3_build_config::get();
    let executable = config.executable().unwrap_or("(unknown)");
    println!("cargo:rustc-env=EVENTHOST_PYTHON_BUILT_WITH={executable}");
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
}
