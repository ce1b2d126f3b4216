//! Every manifest in `examples/` is a valid StreamJob.

use std::path::Path;

#[test]
fn every_example_is_a_valid_stream_job() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            let text = std::fs::read_to_string(&path).unwrap();
            if let Err(e) = eddy_api::load::parse_valid(&text) {
                panic!("{}: {e}", path.display());
            }
            checked += 1;
        }
    }
    assert!(checked > 0, "no examples found in {}", dir.display());
}
