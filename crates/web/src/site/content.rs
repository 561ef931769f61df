//! The operator's own texts: HTML fragments read once at start from the
//! configured content directory, each replacing the default text of one page.

use std::path::Path;

/// Pages whose text an operator can replace, and their file names.
pub(crate) const PAGES: [(&str, &str); 5] = [
    ("home", "home.html"),
    ("privacy", "privacy.html"),
    ("terms", "terms.html"),
    ("contact", "contact.html"),
    ("optout", "optout.html"),
];

/// The replacement texts that were found.
#[derive(Clone, Debug, Default)]
pub(crate) struct Content {
    pub home: Option<String>,
    pub privacy: Option<String>,
    pub terms: Option<String>,
    pub contact: Option<String>,
    pub optout: Option<String>,
}

impl Content {
    /// Reads `dir`'s files; a missing file keeps the default text silently, an
    /// unreadable one with a warning.
    pub fn load(dir: Option<&Path>) -> Content {
        let mut content = Content::default();
        let Some(dir) = dir else {
            return content;
        };
        for (page, file) in PAGES {
            let path = dir.join(file);
            let text = match std::fs::read_to_string(&path) {
                Ok(text) => Some(text),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot read the page text; the default text is shown");
                    None
                }
            };
            if text.is_some() {
                tracing::info!(page, path = %path.display(), "page text replaced by the operator's file");
            }
            match page {
                "home" => content.home = text,
                "privacy" => content.privacy = text,
                "terms" => content.terms = text,
                "contact" => content.contact = text,
                _ => content.optout = text,
            }
        }
        content
    }
}
