//! Just enough of Rust's syntax to list the paths a source file names: comments and
//! literals removed, unit tests cut off, `use` trees expanded.

/// `text` with comments removed and string and char literals emptied (a path in a string or
/// a doc comment imports nothing).
pub(crate) fn without_comments_and_strings(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let rest = &chars[i..];
        if rest.starts_with(&['/', '/']) {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if rest.starts_with(&['/', '*']) {
            i += 2;
            while i < chars.len() && !chars[i..].starts_with(&['*', '/']) {
                i += 1;
            }
            i += 2;
        } else if rest[0] == '"' || rest.starts_with(&['r', '"']) || rest.starts_with(&['r', '#']) {
            // A (raw) string: skip to its closing quote and as many hashes as it opened with.
            let raw = rest[0] == 'r';
            let mut j = i + usize::from(raw);
            let mut hashes = 0;
            while raw && chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                // `r#ident` or a plain `r`.
                out.push(chars[i]);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                match chars.get(j) {
                    None => break,
                    Some('\\') if !raw => j += 2,
                    Some('"')
                        if chars[j + 1..].iter().take_while(|c| **c == '#').count() >= hashes =>
                    {
                        j += 1 + hashes;
                        break;
                    }
                    Some(_) => j += 1,
                }
            }
            out.push_str("\"\"");
            i = j;
        } else if rest[0] == '\'' && (rest.get(2) == Some(&'\'') || rest.get(1) == Some(&'\\')) {
            // A char literal (a lifetime has no closing quote two places on).
            let mut j = i + if rest[1] == '\\' { 3 } else { 2 };
            while j < chars.len() && chars[j] != '\'' {
                j += 1;
            }
            out.push_str("' '");
            i = j + 1;
        } else {
            out.push(rest[0]);
            i += 1;
        }
    }
    out
}

/// `code` up to its unit tests: a `#[cfg(test)]` followed by `mod`.
pub(crate) fn without_tests(code: &str) -> String {
    let mut kept = String::new();
    let mut lines = code.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim() == "#[cfg(test)]"
            && lines
                .peek()
                .is_some_and(|next| next.trim_start().starts_with("mod "))
        {
            break;
        }
        kept.push_str(line);
        kept.push('\n');
    }
    kept
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Every path a file names: each leaf of every `use` tree, and each inline path that starts
/// with `crate`, `super` or `self`. A path is its segments (`*`, `self` and renames dropped),
/// with whether a `pub use` re-exports it.
pub(crate) fn paths_in(code: &str) -> Vec<(Vec<String>, bool)> {
    let mut paths = Vec::new();
    let mut rest = code;
    let mut inline = String::new();
    while let Some(at) = find_word(rest, "use") {
        inline.push_str(&rest[..at]);
        let before = rest[..at].trim_end();
        let reexport = before.ends_with("pub")
            || before.ends_with(')') && {
                let open = before.rfind('(').unwrap_or(0);
                before[..open].trim_end().ends_with("pub")
            };
        let statement = &rest[at + 3..];
        let end = statement.find(';').unwrap_or(statement.len());
        let mut leaves = Vec::new();
        expand_use_tree(&statement[..end], &mut Vec::new(), &mut leaves);
        paths.extend(leaves.into_iter().map(|path| (path, reexport)));
        rest = &statement[(end + 1).min(statement.len())..];
    }
    inline.push_str(rest);
    for start in ["crate", "super", "self"] {
        let mut text = inline.as_str();
        while let Some(at) = find_word(text, start) {
            let path: String = text[at..]
                .chars()
                .take_while(|c| is_ident(*c) || *c == ':')
                .collect();
            let segments: Vec<String> = path
                .split("::")
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            if segments.len() > 1 {
                paths.push((segments, false));
            }
            text = &text[at + path.len().max(1)..];
        }
    }
    paths
}

/// The byte offset of `word` standing alone (not part of a longer identifier).
fn find_word(text: &str, word: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(found) = text[from..].find(word) {
        let at = from + found;
        let before = text[..at].chars().next_back();
        let after = text[at + word.len()..].chars().next();
        if !before.is_some_and(is_ident) && !after.is_some_and(is_ident) {
            return Some(at);
        }
        from = at + word.len();
    }
    None
}

/// Adds every leaf of the use tree `tree` (after `use`), under `prefix`, to `out`.
fn expand_use_tree(tree: &str, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    let tree = tree.trim().trim_start_matches("::");
    let depth = prefix.len();
    let (head, group) = match tree.find('{') {
        Some(open) => {
            let close = tree.rfind('}').unwrap_or(tree.len());
            (&tree[..open], Some(&tree[open + 1..close]))
        }
        None => (tree, None),
    };
    let head = head.split(" as ").next().unwrap_or("");
    prefix.extend(
        head.split("::")
            .map(str::trim)
            .filter(|s| !s.is_empty() && *s != "*" && *s != "self")
            .map(str::to_owned),
    );
    match group {
        None => out.push(prefix.clone()),
        Some(group) => {
            for item in split_top_level(group) {
                expand_use_tree(item, prefix, out);
            }
        }
    }
    prefix.truncate(depth);
}

/// `a, b::{c, d}, e` split at the commas outside braces.
fn split_top_level(group: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&group[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&group[start..]);
    items.retain(|item| !item.trim().is_empty());
    items
}
