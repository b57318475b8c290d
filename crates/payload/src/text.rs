//! The word tokenizer full-text conditions use on fields without a text index (and that this
//! crate's text index uses, so index and scan agree).

/// Lowercased maximal runs of alphanumeric characters; everything else, `_` included, separates
/// tokens. `"Hello, wide_World 42"` is `["hello", "wide", "world", "42"]`.
pub(crate) fn tokenize(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_lowercase)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::tokenize;

    #[test]
    fn words_are_lowercased_alphanumeric_runs() {
        assert_eq!(
            tokenize("Hello, wide_World 42"),
            ["hello", "wide", "world", "42"]
        );
        assert_eq!(tokenize("  Çava-été  "), ["çava", "été"]);
        assert!(tokenize(" ,;_ ").is_empty());
    }
}
