//! The console's static files (CONTRACT-independent: it uses the public HTTP API only),
//! embedded at build time so the binary serves them with nothing else installed and no
//! network. The files are plain HTML, CSS and JavaScript modules in `assets/`: no build
//! step, no framework, no CDN. The HTTP side (routes, headers) is in omnilog-api.

/// One embedded file.
#[derive(Clone, Copy, Debug)]
pub struct Asset {
    /// Its bytes, as in the repository.
    pub bytes: &'static [u8],
    /// Its media type, with a charset for text.
    pub content_type: &'static str,
}

/// One embedded file of `assets/`, by its name, with its media type.
macro_rules! embedded {
    ($name:literal, $content_type:expr) => {
        (
            $name,
            Asset {
                bytes: include_bytes!(concat!("../assets/", $name)),
                content_type: $content_type,
            },
        )
    };
}

const JAVASCRIPT: &str = "text/javascript; charset=utf-8";

/// Every embedded file by its path under `/console/`. A fixed list (not a directory walk)
/// so an asset cannot be served by accident and a missing one fails the build.
const ASSETS: &[(&str, Asset)] = &[
    embedded!("index.html", "text/html; charset=utf-8"),
    embedded!("console.css", "text/css; charset=utf-8"),
    embedded!("app.js", JAVASCRIPT),
    embedded!("api.js", JAVASCRIPT),
    embedded!("ui.js", JAVASCRIPT),
    embedded!("pages.js", JAVASCRIPT),
    embedded!("favicon.svg", "image/svg+xml"),
];

/// The page `/` answers with.
pub fn index() -> Asset {
    asset("index.html").expect("index.html is embedded")
}

/// The file at `path` (relative to `/console/`), if there is one.
pub fn asset(path: &str) -> Option<Asset> {
    ASSETS
        .iter()
        .find(|(name, _)| *name == path)
        .map(|(_, asset)| *asset)
}

/// The names of every embedded file (for tests and `--help`-style listings).
pub fn names() -> impl Iterator<Item = &'static str> {
    ASSETS.iter().map(|(name, _)| *name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_found_and_nothing_else() {
        for name in names() {
            let found = asset(name).expect("listed asset");
            assert!(!found.bytes.is_empty(), "{name} is empty");
        }
        assert!(asset("../Cargo.toml").is_none());
        assert!(asset("").is_none());
        assert!(
            std::str::from_utf8(index().bytes)
                .unwrap()
                .contains("<main")
        );
    }

    #[test]
    fn pages_load_only_embedded_scripts() {
        // Works offline: nothing is fetched from another origin.
        for name in names() {
            // The SVG namespace is a name, not a fetch.
            let text = String::from_utf8_lossy(asset(name).unwrap().bytes)
                .replace("http://www.w3.org/2000/svg", "");
            assert!(
                !text.contains("https://") && !text.contains("http://"),
                "{name} refers to another origin"
            );
        }
    }
}
