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

/// Every embedded file by its path under `/console/`. A fixed list (not a directory walk)
/// so an asset cannot be served by accident and a missing one fails the build.
const ASSETS: &[(&str, Asset)] = &[
    (
        "index.html",
        Asset {
            bytes: include_bytes!("../assets/index.html"),
            content_type: "text/html; charset=utf-8",
        },
    ),
    (
        "console.css",
        Asset {
            bytes: include_bytes!("../assets/console.css"),
            content_type: "text/css; charset=utf-8",
        },
    ),
    (
        "app.js",
        Asset {
            bytes: include_bytes!("../assets/app.js"),
            content_type: "text/javascript; charset=utf-8",
        },
    ),
    (
        "api.js",
        Asset {
            bytes: include_bytes!("../assets/api.js"),
            content_type: "text/javascript; charset=utf-8",
        },
    ),
    (
        "ui.js",
        Asset {
            bytes: include_bytes!("../assets/ui.js"),
            content_type: "text/javascript; charset=utf-8",
        },
    ),
    (
        "pages.js",
        Asset {
            bytes: include_bytes!("../assets/pages.js"),
            content_type: "text/javascript; charset=utf-8",
        },
    ),
    (
        "favicon.svg",
        Asset {
            bytes: include_bytes!("../assets/favicon.svg"),
            content_type: "image/svg+xml",
        },
    ),
];

/// The page `/` answers with.
pub fn index() -> Asset {
    ASSETS[0].1
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
