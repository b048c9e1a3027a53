//! Writes docs/openapi.json from the code (`make openapi`).

use pipewise_local::openapi::{COMMITTED_PATH, api_document_json};

fn main() -> std::io::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let path = root.join(COMMITTED_PATH);
    std::fs::create_dir_all(path.parent().unwrap_or(&root))?;
    std::fs::write(&path, api_document_json())?;
    println!("wrote {COMMITTED_PATH}");
    Ok(())
}
