//! Topic routing as a trie over the words of binding keys, so matching a routing key walks only
//! the branches that can match (`word`, `*`, `#`) instead of testing every binding.
//!
//! Words follow RabbitMQ: a key is split on `.`, the empty key has no words, and empty words
//! are words (`a..b` has three). `*` matches exactly one word, `#` zero or more.

use std::collections::HashMap;

use bytes::Bytes;

use crate::broker::NameHasher;

#[derive(Debug)]
pub struct TopicTrie<T> {
    root: Node<T>,
}

#[derive(Debug)]
struct Node<T> {
    words: HashMap<Bytes, Node<T>, NameHasher>,
    star: Option<Box<Node<T>>>,
    hash: Option<Box<Node<T>>>,
    /// Destinations of bindings whose key ends here.
    values: Vec<T>,
}

impl<T> Default for Node<T> {
    fn default() -> Self {
        Node { words: HashMap::default(), star: None, hash: None, values: Vec::new() }
    }
}

impl<T> Default for TopicTrie<T> {
    fn default() -> Self {
        TopicTrie { root: Node::default() }
    }
}

pub fn split_words(key: &[u8]) -> Vec<&[u8]> {
    if key.is_empty() {
        return Vec::new();
    }
    key.split(|&b| b == b'.').collect()
}

impl<T: PartialEq + Clone> TopicTrie<T> {
    /// Adds `value` under `pattern`; returns false if it was already there.
    pub fn insert(&mut self, pattern: &[u8], value: T) -> bool {
        let mut node = &mut self.root;
        for word in split_words(pattern) {
            node = match word {
                b"*" => node.star.get_or_insert_with(Default::default),
                b"#" => node.hash.get_or_insert_with(Default::default),
                w => node.words.entry(Bytes::copy_from_slice(w)).or_default(),
            };
        }
        if node.values.contains(&value) {
            return false;
        }
        node.values.push(value);
        true
    }

    /// Removes `value` from `pattern`, pruning branches left empty; returns whether it was there.
    pub fn remove(&mut self, pattern: &[u8], value: &T) -> bool {
        fn go<T: PartialEq>(node: &mut Node<T>, words: &[&[u8]], value: &T) -> bool {
            let Some((first, rest)) = words.split_first() else {
                let before = node.values.len();
                node.values.retain(|v| v != value);
                return node.values.len() != before;
            };
            let (removed, empty) = match *first {
                b"*" | b"#" => {
                    let slot = if *first == b"*" { &mut node.star } else { &mut node.hash };
                    match slot {
                        Some(child) => {
                            let r = go(child, rest, value);
                            (r, child.is_empty())
                        }
                        None => return false,
                    }
                }
                w => match node.words.get_mut(w) {
                    Some(child) => {
                        let r = go(child, rest, value);
                        (r, child.is_empty())
                    }
                    None => return false,
                },
            };
            if empty {
                match *first {
                    b"*" => node.star = None,
                    b"#" => node.hash = None,
                    w => {
                        node.words.remove(w);
                    }
                }
            }
            removed
        }
        go(&mut self.root, &split_words(pattern), value)
    }

    /// Calls `found` for each value whose pattern matches `key`. A value bound under several
    /// matching patterns is reported once per pattern; callers dedupe destinations anyway.
    pub fn matches(&self, key: &[u8], found: &mut impl FnMut(&T)) {
        let words = split_words(key);
        self.root.walk(&words, found);
    }

    pub fn is_empty(&self) -> bool {
        self.root.is_empty()
    }
}

impl<T> Node<T> {
    fn is_empty(&self) -> bool {
        self.values.is_empty() && self.words.is_empty() && self.star.is_none() && self.hash.is_none()
    }

    fn walk(&self, words: &[&[u8]], found: &mut impl FnMut(&T)) {
        match words.split_first() {
            None => self.values.iter().for_each(&mut *found),
            Some((first, rest)) => {
                if let Some(child) = self.words.get(*first) {
                    child.walk(rest, found);
                }
                if let Some(child) = &self.star {
                    child.walk(rest, found);
                }
            }
        }
        if let Some(hash) = &self.hash {
            // `#` swallows zero or more words; consecutive `#`s would revisit the same suffixes,
            // which is harmless for correctness (results are deduped by the caller).
            for skip in 0..=words.len() {
                hash.walk(&words[skip..], found);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matching(patterns: &[&str], key: &str) -> Vec<String> {
        let mut t = TopicTrie::default();
        for p in patterns {
            t.insert(p.as_bytes(), p.to_string());
        }
        let mut out = Vec::new();
        t.matches(key.as_bytes(), &mut |v: &String| {
            if !out.contains(v) {
                out.push(v.clone())
            }
        });
        out.sort();
        out
    }

    #[test]
    fn words_stars_and_hashes() {
        let ps = ["a.b.c", "a.*.c", "a.#", "#", "*.b.*", "a.#.c", "#.c", "*", ""];
        assert_eq!(matching(&ps, "a.b.c"), ["#", "#.c", "*.b.*", "a.#", "a.#.c", "a.*.c", "a.b.c"]);
        assert_eq!(matching(&ps, "a"), ["#", "*", "a.#"]);
        assert_eq!(matching(&ps, ""), ["", "#"]);
        assert_eq!(matching(&ps, "a.c"), ["#", "#.c", "a.#", "a.#.c"]);
        assert_eq!(matching(&ps, "a.x.y.c"), ["#", "#.c", "a.#", "a.#.c"]);
        assert_eq!(matching(&ps, "b.b.b"), ["#", "*.b.*"]);
    }

    #[test]
    fn empty_words_are_words() {
        assert_eq!(matching(&["a..b", "a.*.b"], "a..b"), ["a.*.b", "a..b"]);
        assert_eq!(matching(&["*"], "."), Vec::<String>::new());
        assert_eq!(matching(&["*.*"], "."), ["*.*"]);
        assert_eq!(matching(&["a.#"], "a."), ["a.#"]);
    }

    #[test]
    fn remove_prunes_and_reports() {
        let mut t = TopicTrie::default();
        assert!(t.insert(b"a.*.#", 1));
        assert!(!t.insert(b"a.*.#", 1));
        assert!(t.insert(b"a.*.#", 2));
        assert!(t.remove(b"a.*.#", &1));
        assert!(!t.remove(b"a.*.#", &1));
        assert!(!t.remove(b"x.y", &2));
        assert!(t.remove(b"a.*.#", &2));
        assert!(t.is_empty());
    }
}
