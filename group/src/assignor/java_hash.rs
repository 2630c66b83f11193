//! Java's `HashMap`/`HashSet` iteration order, for the few places where Java's sticky assignor lets it
//! decide the outcome (which owner keeps its extra partition, which partition a reversed movement
//! picks). Matching Java's assignment exactly means iterating the same way.
//!
//! A Java `HashMap` iterates its table bucket by bucket; a bucket is `spread(hashCode) & (capacity-1)`
//! and keeps its entries in insertion order (resizing splits a bucket in two without reordering).
//! Treeified buckets (8+ colliding keys in a table of 64+) are not modelled: group sizes here are far
//! below that.

use crate::TopicPartition;

/// `String.hashCode()`: over UTF-16 code units, wrapping.
pub(crate) fn string_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

/// `TopicPartition.hashCode()`: `31 * (31 + partition) + topic.hashCode()`.
pub(crate) fn tp_hash(tp: &TopicPartition) -> i32 {
    31i32
        .wrapping_add(tp.partition)
        .wrapping_mul(31)
        .wrapping_add(string_hash(&tp.topic))
}

/// Keys Java hashes.
pub(crate) trait JavaHash: Eq + Clone {
    fn java_hash(&self) -> i32;
}

impl JavaHash for String {
    fn java_hash(&self) -> i32 {
        string_hash(self)
    }
}

impl JavaHash for TopicPartition {
    fn java_hash(&self) -> i32 {
        tp_hash(self)
    }
}

/// `HashMap.hash()`: the high half folded into the low half.
fn spread(h: i32) -> u32 {
    let h = h as u32;
    h ^ (h >> 16)
}

/// A `java.util.HashSet` (or a `HashMap`'s key set) built with the default constructor: the same
/// buckets, the same resizes, so the same iteration order.
#[derive(Debug, Clone)]
pub(crate) struct JavaHashSet<K> {
    buckets: Vec<Vec<K>>,
    len: usize,
}

impl<K: JavaHash> Default for JavaHashSet<K> {
    fn default() -> Self {
        Self {
            buckets: Vec::new(),
            len: 0,
        }
    }
}

impl<K: JavaHash> JavaHashSet<K> {
    /// A set filled by `add`s in this order.
    pub(crate) fn from_inserts(keys: impl IntoIterator<Item = K>) -> Self {
        let mut set = Self::default();
        for k in keys {
            set.insert(k);
        }
        set
    }

    fn index(&self, k: &K) -> usize {
        (spread(k.java_hash()) as usize) & (self.buckets.len() - 1)
    }

    /// `add`: appends to its bucket unless present; grows past a load factor of 0.75 as Java does.
    pub(crate) fn insert(&mut self, k: K) -> bool {
        if self.buckets.is_empty() {
            self.buckets = vec![Vec::new(); 16];
        }
        let i = self.index(&k);
        if self.buckets[i].contains(&k) {
            return false;
        }
        self.buckets[i].push(k);
        self.len += 1;
        if self.len > self.buckets.len() / 4 * 3 {
            self.grow();
        }
        true
    }

    fn grow(&mut self) {
        let old = std::mem::take(&mut self.buckets);
        self.buckets = vec![Vec::new(); old.len() * 2];
        // Walking the old buckets in order and appending keeps each new bucket's relative order,
        // which is what Java's lo/hi split does.
        for k in old.into_iter().flatten() {
            let i = self.index(&k);
            self.buckets[i].push(k);
        }
    }

    /// `remove`: the table never shrinks.
    pub(crate) fn remove(&mut self, k: &K) -> bool {
        if self.buckets.is_empty() {
            return false;
        }
        let i = self.index(k);
        match self.buckets[i].iter().position(|x| x == k) {
            Some(at) => {
                self.buckets[i].remove(at);
                self.len -= 1;
                true
            }
            None => false,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Java's iteration order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &K> {
        self.buckets.iter().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_match_java() {
        // Values printed by Java: "consumer-1".hashCode(), new TopicPartition("t", 3).hashCode().
        assert_eq!(string_hash(""), 0);
        assert_eq!(string_hash("a"), 97);
        assert_eq!(string_hash("consumer-1"), -166_239_206);
        assert_eq!(tp_hash(&TopicPartition::new("t", 3)), 1170);
    }

    #[test]
    fn iterates_by_bucket_then_insertion_order_across_resizes() {
        let keys: Vec<String> = (0..40).map(|i| format!("m{i}")).collect();
        let set = JavaHashSet::from_inserts(keys.iter().cloned());
        assert_eq!(set.buckets.len(), 64, "40 keys: 16 -> 32 -> 64");
        let order: Vec<&String> = set.iter().collect();
        assert_eq!(order.len(), 40);
        let bucket = |k: &String| (spread(string_hash(k)) as usize) & 63;
        assert!(order.windows(2).all(|w| bucket(w[0]) <= bucket(w[1])));
    }
}
