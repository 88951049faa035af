pub fn generate(_patients: usize, _seed: u64) -> Vec<serde_json::Value> {
    Vec::new()
}
