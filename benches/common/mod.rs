//! Helpers the benchmark programs share: real pages from a dump, and
//! criterion's estimates read back for the summary tables.

/// Bytes per page of the dumps `zswap-rs profile --save-pages` writes.
pub const PAGE: usize = 4096;

/// Every page of the raw dump named by `ZSWAP_RS_PAGES` (default
/// `target/pages.bin`); exits with the command that makes one if missing.
pub fn load_pages() -> Vec<Vec<u8>> {
    let path = std::env::var("ZSWAP_RS_PAGES").unwrap_or_else(|_| "target/pages.bin".into());
    let data = std::fs::read(&path).unwrap_or_else(|e| {
        eprintln!(
            "cannot read real pages from {path}: {e}\n\
             make them with: zswap-rs profile --save-pages {path}\n\
             (or point ZSWAP_RS_PAGES at a raw page dump)"
        );
        std::process::exit(2);
    });
    assert!(
        data.len() % PAGE == 0 && !data.is_empty(),
        "{path} is not a whole number of pages"
    );
    data.chunks_exact(PAGE).map(<[u8]>::to_vec).collect()
}

/// Median estimate in ns of one benchmark, read back from criterion's output.
#[allow(dead_code)] // `batch` reads no criterion output.
pub fn estimate_ns(group: &str, bench: &str) -> Option<f64> {
    let dir = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let path = format!("{dir}/criterion/{group}/{bench}/new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let at = text.find("\"median\"")?;
    let rest = &text[at..];
    let pe = rest.find("\"point_estimate\":")? + "\"point_estimate\":".len();
    let num: String = rest[pe..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == 'e' || *c == '-')
        .collect();
    num.parse().ok()
}
