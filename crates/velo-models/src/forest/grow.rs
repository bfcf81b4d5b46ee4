//! Growing one regression tree: exact CART (squared error) on presorted feature ranks.
//!
//! Every feature is sorted once per fit ([`Presorted`]). Features with two distinct values
//! (one-hot indicators, flags) become one bit per row; the others keep, for each tree, the
//! tree's rows in the feature's order. A node owns the same range `start..end` of every list
//! (and of a list of its rows, `members`), and a split partitions each list stably in place, so
//! every node sees its rows sorted by every feature without sorting again. Lists are not
//! partitioned under children that are both leaves, nor for features known to be constant.
//!
//! The split search evaluates scikit-learn's criterion between every two consecutive distinct
//! values of a feature in the node (see [`Best`]): one branch-free pass over the node's sorted
//! rows for a many-valued feature; for all two-valued features at once, sums over the rows
//! whose bit is set, counted over the smaller child of the parent and obtained by difference
//! for the larger one. The thresholds are exactly scikit-learn's (midpoints of consecutive
//! distinct values, rounded to `f32`), whatever the number of distinct values.
//!
//! Nodes of two rows, a third of the split nodes of a deep tree, skip the search: the first
//! feature in draw order on which the rows differ separates them (all such splits score alike),
//! and leaves carry no per-node buffers.

use rand::RngCore;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::super::matrix::FeatureMatrix;
use super::super::tree::Node;

/// The low 32 bits of a packed entry: a row.
const ROW_MASK: u64 = 0xFFFF_FFFF;

/// How the split search sees a feature.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// At most two distinct values: bit `bit` of a row is its rank (0 or 1).
    Binary { bit: usize },
    /// More values: sorted list `list`.
    Sorted { list: usize },
}

/// Features of one fit, sorted once and shared by every tree.
pub(super) struct Presorted {
    kinds: Vec<Kind>,
    /// Per many-valued feature: every row as `rank << 32 | row`, sorted by value (ties by
    /// row), where `rank` is the position of the row's value among the distinct values.
    sorted: Vec<Vec<u64>>,
    /// Per row, `binary_words` words holding the ranks of the two-valued features.
    bits: Vec<u64>,
    binary_words: usize,
    /// Per feature: the distinct values, ascending.
    values: Vec<Vec<f32>>,
    n_rows: usize,
}

impl Presorted {
    /// Sorts every column of `x` (whose values are finite and whose row count fits in `u32`).
    pub(super) fn new(x: &FeatureMatrix) -> Self {
        let n_rows = x.n_rows();
        let (sorted, values): (Vec<Vec<u64>>, Vec<Vec<f32>>) = x
            .columns()
            .par_iter()
            .map(|column| presort_column(column))
            .unzip();
        let n_binary = values.iter().filter(|values| values.len() <= 2).count();
        let binary_words = n_binary.div_ceil(64);
        let mut bits = vec![0_u64; n_rows * binary_words];
        let mut kinds = Vec::with_capacity(values.len());
        let mut lists = Vec::new();
        let mut bit = 0;
        for (entries, distinct) in sorted.into_iter().zip(&values) {
            if distinct.len() <= 2 {
                for entry in entries {
                    if entry >> 32 == 1 {
                        let row = (entry & ROW_MASK) as usize;
                        bits[row * binary_words + bit / 64] |= 1 << (bit % 64);
                    }
                }
                kinds.push(Kind::Binary { bit });
                bit += 1;
            } else {
                kinds.push(Kind::Sorted { list: lists.len() });
                lists.push(entries);
            }
        }
        Self {
            kinds,
            sorted: lists,
            bits,
            binary_words,
            values,
            n_rows,
        }
    }

    fn n_features(&self) -> usize {
        self.kinds.len()
    }

    fn n_binary(&self) -> usize {
        self.kinds.len() - self.sorted.len()
    }
}

/// Sorts one finite column: packed `rank << 32 | row` entries and the distinct values.
fn presort_column(column: &[f32]) -> (Vec<u64>, Vec<f32>) {
    // Sort `order_key(value) << 32 | row`: ascending values, ties by row.
    let mut keys: Vec<u64> = column
        .iter()
        .zip(0_u32..)
        .map(|(&value, row)| (u64::from(order_key(value)) << 32) | u64::from(row))
        .collect();
    keys.sort_unstable();
    let mut values: Vec<f32> = Vec::new();
    let mut previous_key = None;
    for entry in &mut keys {
        let key = (*entry >> 32) as u32;
        let row = *entry & ROW_MASK;
        if previous_key != Some(key) {
            previous_key = Some(key);
            values.push(column[row as usize] + 0.0);
        }
        let rank = (values.len() - 1) as u64;
        *entry = (rank << 32) | row;
    }
    (keys, values)
}

/// A key whose unsigned order is the numeric order of finite `f32` values (`-0.0` equals `0.0`).
fn order_key(value: f32) -> u32 {
    // Adding 0.0 turns -0.0 into 0.0.
    let bits = (value + 0.0).to_bits();
    if bits & 0x8000_0000 == 0 {
        bits | 0x8000_0000
    } else {
        !bits
    }
}

/// The resolved growth limits of a tree.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    /// Nodes at this depth are leaves.
    pub(super) max_depth: usize,
    /// A node with fewer distinct (bootstrap) rows is a leaf.
    pub(super) min_samples_split: usize,
    /// Each child of a split keeps at least this many distinct rows.
    pub(super) min_samples_leaf: usize,
    /// Features drawn at each node (scikit-learn's rule: more when they are all constant).
    pub(super) max_features: usize,
}

impl Limits {
    /// True when a node at `depth` with these statistics cannot be split.
    fn makes_leaf(&self, depth: usize, stats: &Stats) -> bool {
        depth >= self.max_depth
            || stats.count < self.min_samples_split
            || stats.count < 2 * self.min_samples_leaf
            || stats.is_pure()
    }
}

/// An unbiased draw in `0..bound` (Lemire's multiply-and-reject method); `bound` is positive.
///
/// Written here rather than taken from `rand`, whose algorithms may change between versions, so
/// that a seed gives the same forest forever.
pub(super) fn random_below(rng: &mut ChaCha8Rng, bound: u32) -> u32 {
    let mut product = u64::from(rng.next_u32()) * u64::from(bound);
    // The remainder is only needed (and a division paid) when the low part is small.
    if (product as u32) < bound {
        let threshold = bound.wrapping_neg() % bound;
        while (product as u32) < threshold {
            product = u64::from(rng.next_u32()) * u64::from(bound);
        }
    }
    (product >> 32) as u32
}

/// Per-row weights of a tree: bootstrap counts (`bootstrap`) or ones.
pub(super) fn sample_counts(n_rows: usize, bootstrap: bool, rng: &mut ChaCha8Rng) -> Vec<u32> {
    if !bootstrap {
        return vec![1; n_rows];
    }
    let mut counts = vec![0_u32; n_rows];
    let bound = u32::try_from(n_rows).expect("the row count was checked to fit in u32");
    for _ in 0..n_rows {
        counts[random_below(rng, bound) as usize] += 1;
    }
    counts
}

/// Weighted sums over the rows of a node.
#[derive(Debug, Clone, Copy)]
struct Stats {
    /// Distinct rows.
    count: usize,
    /// Sum of weights.
    weight: f64,
    /// Sum of `w * y`.
    sum: f64,
    /// Sum of `w * y * y`.
    sum_squares: f64,
    /// Smallest target.
    min: f64,
    /// Largest target.
    max: f64,
}

impl Stats {
    const EMPTY: Self = Self {
        count: 0,
        weight: 0.0,
        sum: 0.0,
        sum_squares: 0.0,
        min: f64::INFINITY,
        max: f64::NEG_INFINITY,
    };

    fn add(&mut self, weight: f64, target: f64) {
        self.count += 1;
        self.weight += weight;
        self.sum += weight * target;
        self.sum_squares += weight * target * target;
        // Selections (targets are finite): cheaper than `f64::min`, and without branches.
        self.min = if target < self.min { target } else { self.min };
        self.max = if target > self.max { target } else { self.max };
    }

    /// The mean target; exactly the target when every row has the same one.
    fn value(&self) -> f64 {
        if self.min == self.max {
            self.min
        } else {
            self.sum / self.weight
        }
    }

    /// scikit-learn's node impurity: the weighted variance of the targets.
    fn impurity(&self) -> f64 {
        let mean = self.sum / self.weight;
        self.sum_squares / self.weight - mean * mean
    }

    /// `weight * impurity`, the quantity whose decrease is a split's gain.
    fn weighted_impurity(&self) -> f64 {
        self.weight * self.impurity()
    }

    fn is_pure(&self) -> bool {
        self.min == self.max || self.impurity() <= f64::EPSILON
    }
}

/// The weight and weighted target of one row, read together by the split search.
#[derive(Debug, Clone, Copy, Default)]
struct RowWeights {
    weight: f64,
    weighted_target: f64,
}

/// Sums over the rows of a node whose bit is set, for one two-valued feature.
#[derive(Debug, Clone, Copy, Default)]
struct Ones {
    count: usize,
    weight: f64,
    sum: f64,
}

/// A node waiting to be grown.
struct Pending {
    start: usize,
    end: usize,
    depth: usize,
    /// The parent's index and whether this node is its left child.
    parent: Option<(usize, bool)>,
    stats: Stats,
    /// Features constant on this node's rows (found at an ancestor), one bit each.
    constants: Vec<u64>,
    /// Sums over the rows with each two-valued feature's bit set, when already known.
    ones: Option<Vec<Ones>>,
}

/// The best split found so far at a node.
#[derive(Debug, Clone, Copy)]
struct Split {
    feature: usize,
    /// Number of rows going left.
    n_left: usize,
    /// Rank of the largest value going left.
    left_rank: u32,
    /// Rank of the smallest value going right.
    right_rank: u32,
}

/// The best split score found so far at a node.
///
/// scikit-learn maximises the proxy `S_l^2 / W_l + S_r^2 / W_r`, which equals
/// `S^2 / W + d^2 / (W W_l W_r)` with `d = S_l W - S W_l`: for a given node it is enough to
/// maximise `d^2 / (W_l W_r)`, and a candidate can be tested without a division as
/// `d^2 > score W_l W_r` (cheap enough to run at every position, so the scan needs no
/// unpredictable branch).
#[derive(Debug, Clone, Copy)]
struct Best {
    score: f64,
}

impl Best {
    const NONE: Self = Self {
        score: f64::NEG_INFINITY,
    };

    /// True when a split with `weight_left` and `sum_left` beats the best one, which it then
    /// becomes (`total` holds the node's sums).
    #[inline]
    fn improves(&mut self, total: &Stats, weight_left: f64, sum_left: f64) -> bool {
        let difference = sum_left * total.weight - total.sum * weight_left;
        let product = weight_left * (total.weight - weight_left);
        if difference * difference > self.score * product {
            let score = difference * difference / product;
            if score > self.score {
                self.score = score;
                return true;
            }
        }
        false
    }
}

/// Buffers of one tree, reused across the trees a thread grows.
#[derive(Default)]
pub(super) struct Workspace {
    /// Per many-valued feature, `n_local` packed `rank << 32 | local row` entries.
    lists: Vec<u64>,
    scratch: Vec<u64>,
    /// The local rows, partitioned like the lists.
    members: Vec<u32>,
    member_scratch: Vec<u32>,
    /// Per local row, the bits of the two-valued features.
    bits: Vec<u64>,
    /// Sums of the current node's rows per two-valued feature, valid when `ones_ready`.
    ones: Vec<Ones>,
    ones_ready: bool,
    spare_ones: Vec<Vec<Ones>>,
    rows: Vec<RowWeights>,
    targets: Vec<f64>,
    goes_left: Vec<bool>,
    local_of_row: Vec<u32>,
    pool: Vec<u32>,
    spare_bitsets: Vec<Vec<u64>>,
}

/// Grows one tree on the rows with a positive count; returns its nodes, root first, in
/// depth-first order (a left child right after its parent).
pub(super) fn grow_tree(
    presorted: &Presorted,
    targets: &[f64],
    counts: &[u32],
    limits: Limits,
    rng: &mut ChaCha8Rng,
    workspace: &mut Workspace,
) -> Vec<Node> {
    let n_features = presorted.n_features();
    let words = n_features.div_ceil(64);
    let binary_words = presorted.binary_words;

    // Number the rows drawn at least once (local rows), in row order.
    let ws = workspace;
    ws.local_of_row.clear();
    ws.local_of_row.resize(presorted.n_rows, u32::MAX);
    ws.rows.clear();
    ws.targets.clear();
    ws.members.clear();
    ws.bits.clear();
    let mut root = Stats::EMPTY;
    for (row, (&count, &target)) in counts.iter().zip(targets).enumerate() {
        if count > 0 {
            let local = ws.rows.len() as u32;
            ws.local_of_row[row] = local;
            ws.members.push(local);
            let weight = f64::from(count);
            ws.rows.push(RowWeights {
                weight,
                weighted_target: weight * target,
            });
            ws.targets.push(target);
            ws.bits
                .extend_from_slice(&presorted.bits[row * binary_words..(row + 1) * binary_words]);
            root.add(weight, target);
        }
    }
    let n_local = ws.rows.len();

    // Each many-valued feature's list of local rows, in the feature's order.
    ws.lists.clear();
    ws.lists.resize(presorted.sorted.len() * n_local + 1, 0);
    for (list, sorted) in presorted.sorted.iter().enumerate() {
        // Branch-free filter: always write, advance only past rows of the sample.
        let mut at = list * n_local;
        for &entry in sorted {
            let local = ws.local_of_row[(entry & ROW_MASK) as usize];
            ws.lists[at] = (entry & !ROW_MASK) | u64::from(local);
            at += usize::from(local != u32::MAX);
        }
    }
    ws.lists.truncate(presorted.sorted.len() * n_local);
    ws.scratch.clear();
    ws.scratch.resize(n_local, 0);
    ws.member_scratch.clear();
    ws.member_scratch.resize(n_local, 0);
    ws.goes_left.clear();
    ws.goes_left.resize(n_local, false);
    ws.ones.clear();
    ws.ones.resize(presorted.n_binary(), Ones::default());

    let mut nodes: Vec<Node> = Vec::new();
    let mut stack = vec![Pending {
        start: 0,
        end: n_local,
        depth: 0,
        parent: None,
        stats: root,
        constants: vec![0; words],
        ones: None,
    }];
    while let Some(pending) = stack.pop() {
        let index = nodes.len();
        if let Some((parent, is_left)) = pending.parent {
            let parent = &mut nodes[parent];
            if is_left {
                parent.left = index as u32;
            } else {
                parent.right = index as u32;
            }
        }
        let stats = pending.stats;
        nodes.push(Node::leaf(stats.value(), stats.weight));
        let (start, end) = (pending.start, pending.end);
        let is_leaf = limits.makes_leaf(pending.depth, &stats);
        let mut constants = pending.constants;
        ws.ones_ready = false;
        if let Some(ones) = pending.ones {
            ws.ones.copy_from_slice(&ones);
            ws.ones_ready = true;
            ws.spare_ones.push(ones);
        }
        if !is_leaf && end - start == 2 {
            // Two rows: every split separates them, so the first feature (in draw order) on
            // which they differ gives the split; both children are leaves.
            if let Some(pair) = split_pair(start, &mut constants, presorted, limits, rng, ws) {
                let leaf = |local: u32| {
                    let mut stats = Stats::EMPTY;
                    stats.add(ws.rows[local as usize].weight, ws.targets[local as usize]);
                    stats
                };
                let (left, right) = (leaf(pair.left), leaf(pair.right));
                let values = &presorted.values[pair.split.feature];
                nodes[index] = Node {
                    feature: pair.split.feature as u32,
                    threshold: midpoint(
                        values[pair.split.left_rank as usize],
                        values[pair.split.right_rank as usize],
                    ),
                    left: index as u32 + 1,
                    right: index as u32 + 2,
                    value: stats.value(),
                    cover: stats.weight,
                    gain: stats.weighted_impurity()
                        - left.weighted_impurity()
                        - right.weighted_impurity(),
                };
                nodes.push(Node::leaf(left.value(), left.weight));
                nodes.push(Node::leaf(right.value(), right.weight));
            }
            recycle(&mut ws.spare_bitsets, constants);
            continue;
        }
        let split = if is_leaf {
            None
        } else {
            find_split(
                (start, end),
                &stats,
                &mut constants,
                presorted,
                limits,
                rng,
                ws,
            )
        };
        let Some(split) = split else {
            recycle(&mut ws.spare_bitsets, constants);
            continue;
        };

        // Mark the side of every row.
        match presorted.kinds[split.feature] {
            Kind::Binary { bit } => {
                let (word, mask) = (bit / 64, 1_u64 << (bit % 64));
                for &local in &ws.members[start..end] {
                    let local = local as usize;
                    ws.goes_left[local] = ws.bits[local * binary_words + word] & mask == 0;
                }
            }
            Kind::Sorted { list } => {
                let entries = &ws.lists[list * n_local + start..list * n_local + end];
                for (offset, &entry) in entries.iter().enumerate() {
                    ws.goes_left[(entry & ROW_MASK) as usize] = offset < split.n_left;
                }
            }
        }
        // Partition the rows, sum each child's statistics, and partition every list the
        // children may read (none when both are leaves).
        stable_partition(
            &mut ws.members[start..end],
            &ws.goes_left,
            &mut ws.member_scratch,
            |local| local as usize,
        );
        let middle = start + split.n_left;
        let sum_rows = |members: &[u32]| {
            let mut stats = Stats::EMPTY;
            for &local in members {
                stats.add(ws.rows[local as usize].weight, ws.targets[local as usize]);
            }
            stats
        };
        let left = sum_rows(&ws.members[start..middle]);
        let right = sum_rows(&ws.members[middle..end]);
        let children_are_leaves = limits.makes_leaf(pending.depth + 1, &left)
            && limits.makes_leaf(pending.depth + 1, &right);
        if !children_are_leaves {
            for (feature, kind) in presorted.kinds.iter().enumerate() {
                let Kind::Sorted { list } = *kind else {
                    continue;
                };
                if feature == split.feature || constants[feature / 64] >> (feature % 64) & 1 == 1 {
                    continue;
                }
                let entries = &mut ws.lists[list * n_local + start..list * n_local + end];
                stable_partition(entries, &ws.goes_left, &mut ws.scratch, |entry| {
                    (entry & ROW_MASK) as usize
                });
            }
        }

        let values = &presorted.values[split.feature];
        let below = values[split.left_rank as usize];
        let above = values[split.right_rank as usize];
        let gain = stats.weighted_impurity() - left.weighted_impurity() - right.weighted_impurity();
        nodes[index] = Node {
            feature: split.feature as u32,
            threshold: midpoint(below, above),
            left: 0,
            right: 0,
            value: stats.value(),
            cover: stats.weight,
            gain,
        };
        let (left_ones, right_ones) = if !children_are_leaves && ws.ones_ready {
            let (left_ones, right_ones) = children_ones(ws, (start, middle, end), binary_words);
            (Some(left_ones), Some(right_ones))
        } else {
            (None, None)
        };
        // A leaf needs no constants: only children that may split carry them.
        let (left_is_leaf, right_is_leaf) = (
            limits.makes_leaf(pending.depth + 1, &left),
            limits.makes_leaf(pending.depth + 1, &right),
        );
        let right_constants = if right_is_leaf {
            Vec::new()
        } else if left_is_leaf {
            std::mem::take(&mut constants)
        } else {
            let mut right_constants = ws.spare_bitsets.pop().unwrap_or_default();
            right_constants.clone_from(&constants);
            right_constants
        };
        if left_is_leaf {
            recycle(&mut ws.spare_bitsets, std::mem::take(&mut constants));
        }
        // Push the right child first so that the left one is grown next (depth-first order).
        stack.push(Pending {
            start: middle,
            end,
            depth: pending.depth + 1,
            parent: Some((index, false)),
            stats: right,
            constants: right_constants,
            ones: right_ones,
        });
        stack.push(Pending {
            start,
            end: middle,
            depth: pending.depth + 1,
            parent: Some((index, true)),
            stats: left,
            constants,
            ones: left_ones,
        });
    }
    // A grown vector holds up to twice its nodes; the forest keeps every tree.
    nodes.shrink_to_fit();
    nodes
}

/// Keeps a bitset's buffer for a later node (an empty one holds nothing worth keeping).
fn recycle(spare: &mut Vec<Vec<u64>>, bitset: Vec<u64>) {
    if bitset.capacity() > 0 {
        spare.push(bitset);
    }
}

/// The split of a node of two rows, and which row goes to which side.
struct PairSplit {
    split: Split,
    left: u32,
    right: u32,
}

/// The split of the node of the two rows at `start`: on the first feature, in draw order, on
/// which they differ (every split of two rows has the same score), or `None` when they differ
/// on none of the features visited.
fn split_pair(
    start: usize,
    constants: &mut [u64],
    presorted: &Presorted,
    limits: Limits,
    rng: &mut ChaCha8Rng,
    ws: &mut Workspace,
) -> Option<PairSplit> {
    let n_local = ws.rows.len();
    let binary_words = presorted.binary_words;
    let (first, second) = (ws.members[start] as usize, ws.members[start + 1] as usize);
    let mut found = None;
    let mut pool = std::mem::take(&mut ws.pool);
    visit_in_draw_order(
        presorted.n_features(),
        constants,
        limits,
        rng,
        &mut pool,
        |feature, constants| {
            if found.is_some() {
                return Visit::Stop;
            }
            if constants[feature / 64] >> (feature % 64) & 1 == 1 {
                return Visit::KnownConstant;
            }
            let sides = match presorted.kinds[feature] {
                Kind::Binary { bit } => {
                    let (word, mask) = (bit / 64, 1_u64 << (bit % 64));
                    let set = |local: usize| ws.bits[local * binary_words + word] & mask != 0;
                    match (set(first), set(second)) {
                        (false, true) => Some((first, second, 0, 1)),
                        (true, false) => Some((second, first, 0, 1)),
                        _ => None,
                    }
                }
                Kind::Sorted { list } => {
                    let (low, high) = (
                        ws.lists[list * n_local + start],
                        ws.lists[list * n_local + start + 1],
                    );
                    (low >> 32 != high >> 32).then_some((
                        (low & ROW_MASK) as usize,
                        (high & ROW_MASK) as usize,
                        (low >> 32) as u32,
                        (high >> 32) as u32,
                    ))
                }
            };
            match sides {
                Some((left, right, left_rank, right_rank)) => {
                    found = Some(PairSplit {
                        split: Split {
                            feature,
                            n_left: 1,
                            left_rank,
                            right_rank,
                        },
                        left: left as u32,
                        right: right as u32,
                    });
                    Visit::Evaluated
                }
                None => Visit::FoundConstant,
            }
        },
    );
    ws.pool = pool;
    found
}

/// scikit-learn's threshold between two consecutive distinct values: their midpoint, or the
/// lower value when the midpoint rounds up to the upper one (so the lower one still goes left).
fn midpoint(below: f32, above: f32) -> f32 {
    let middle = (f64::from(below) / 2.0 + f64::from(above) / 2.0) as f32;
    if middle < above && middle.is_finite() {
        middle
    } else {
        below
    }
}

/// The two-valued features' sums of both children of a split node (whose own sums are in
/// `ws.ones`): counted over the smaller child, the other one by difference.
fn children_ones(
    ws: &mut Workspace,
    (start, middle, end): (usize, usize, usize),
    binary_words: usize,
) -> (Vec<Ones>, Vec<Ones>) {
    let mut small = ws.spare_ones.pop().unwrap_or_default();
    small.resize(ws.ones.len(), Ones::default());
    let mut large = ws.spare_ones.pop().unwrap_or_default();
    large.clone_from(&ws.ones);
    let left_is_small = middle - start <= end - middle;
    let members = if left_is_small {
        &ws.members[start..middle]
    } else {
        &ws.members[middle..end]
    };
    count_ones(members, &ws.bits, binary_words, &ws.rows, &mut small);
    for (large, small) in large.iter_mut().zip(&small) {
        large.count -= small.count;
        large.weight -= small.weight;
        large.sum -= small.sum;
    }
    if left_is_small {
        (small, large)
    } else {
        (large, small)
    }
}

/// The best split of the rows `start..end`, if any. `constants` holds the features known to be
/// constant on these rows; those found constant here are added to it.
///
/// Features are visited as scikit-learn draws them: without replacement, until `max_features`
/// were visited and one of them was not constant (or only known constants are left). With
/// every feature to visit, the order only breaks ties between equally good splits: it is then a
/// random rotation of the feature order, one draw instead of one per feature.
fn find_split(
    (start, end): (usize, usize),
    stats: &Stats,
    constants: &mut [u64],
    presorted: &Presorted,
    limits: Limits,
    rng: &mut ChaCha8Rng,
    ws: &mut Workspace,
) -> Option<Split> {
    let mut search = Search {
        start,
        end,
        stats,
        presorted,
        min_leaf: limits.min_samples_leaf,
        best: Best::NONE,
        split: None,
    };
    let mut pool = std::mem::take(&mut ws.pool);
    visit_in_draw_order(
        presorted.n_features(),
        constants,
        limits,
        rng,
        &mut pool,
        |feature, constants| search.visit(feature, constants, ws),
    );
    ws.pool = pool;
    search.split
}

/// Calls `visit` on features in scikit-learn's draw order (see [`find_split`]). After
/// [`Visit::Stop`], a rotation of every feature ends; a draw of fewer features goes on drawing
/// (calling `visit` again), so that the random stream does not depend on where a search ended.
fn visit_in_draw_order(
    n_features: usize,
    constants: &mut [u64],
    limits: Limits,
    rng: &mut ChaCha8Rng,
    pool: &mut Vec<u32>,
    mut visit: impl FnMut(usize, &mut [u64]) -> Visit,
) {
    if limits.max_features >= n_features {
        let first = random_below(rng, n_features as u32) as usize;
        for feature in (first..n_features).chain(0..first) {
            if let Visit::Stop = visit(feature, constants) {
                return;
            }
        }
        return;
    }
    pool.clear();
    pool.extend(0..n_features as u32);
    let mut undrawn = n_features;
    let mut undrawn_known_constants: usize = constants
        .iter()
        .map(|word| word.count_ones() as usize)
        .sum();
    let mut visited = 0;
    let mut constants_seen = 0;
    // scikit-learn's loop: stop when only known constants are left, or when `max_features`
    // features were drawn and at least one of them was not constant.
    while undrawn > undrawn_known_constants
        && (visited < limits.max_features || visited <= constants_seen)
    {
        visited += 1;
        let drawn = random_below(rng, undrawn as u32) as usize;
        pool.swap(drawn, undrawn - 1);
        undrawn -= 1;
        let feature = pool[undrawn] as usize;
        match visit(feature, constants) {
            Visit::KnownConstant => {
                undrawn_known_constants -= 1;
                constants_seen += 1;
            }
            Visit::FoundConstant => constants_seen += 1,
            Visit::Evaluated | Visit::Stop => {}
        }
    }
}

/// What visiting a feature at a node found.
enum Visit {
    /// The feature was known to be constant on the node's rows.
    KnownConstant,
    /// The feature turned out to be constant on the node's rows.
    FoundConstant,
    /// The feature's splits were evaluated.
    Evaluated,
    /// No later feature can give a better split.
    Stop,
}

/// The split search at one node.
struct Search<'a> {
    start: usize,
    end: usize,
    stats: &'a Stats,
    presorted: &'a Presorted,
    min_leaf: usize,
    best: Best,
    split: Option<Split>,
}

impl Search<'_> {
    /// Evaluates the splits on `feature`, keeping the best one.
    fn visit(&mut self, feature: usize, constants: &mut [u64], ws: &mut Workspace) -> Visit {
        let (word, bit) = (feature / 64, 1_u64 << (feature % 64));
        if constants[word] & bit != 0 {
            return Visit::KnownConstant;
        }
        let (start, end) = (self.start, self.end);
        let n = end - start;
        let n_local = ws.rows.len();
        match self.presorted.kinds[feature] {
            Kind::Binary { bit: binary } => {
                if !ws.ones_ready {
                    let words = self.presorted.binary_words;
                    count_ones(
                        &ws.members[start..end],
                        &ws.bits,
                        words,
                        &ws.rows,
                        &mut ws.ones,
                    );
                    ws.ones_ready = true;
                }
                let ones = ws.ones[binary];
                if ones.count == 0 || ones.count == n {
                    constants[word] |= bit;
                    return Visit::FoundConstant;
                }
                // The rows of rank 0 go left.
                let stats = self.stats;
                if n - ones.count >= self.min_leaf
                    && ones.count >= self.min_leaf
                    && self
                        .best
                        .improves(stats, stats.weight - ones.weight, stats.sum - ones.sum)
                {
                    let n_left = n - ones.count;
                    self.split = Some(Split {
                        feature,
                        n_left,
                        left_rank: 0,
                        right_rank: 1,
                    });
                }
            }
            Kind::Sorted { list } => {
                let entries = &ws.lists[list * n_local + start..list * n_local + end];
                if entries[0] >> 32 == entries[n - 1] >> 32 {
                    constants[word] |= bit;
                    return Visit::FoundConstant;
                }
                if let Some(n_left) =
                    best_position(entries, &ws.rows, self.stats, self.min_leaf, &mut self.best)
                {
                    self.split = Some(Split {
                        feature,
                        n_left,
                        left_rank: (entries[n_left - 1] >> 32) as u32,
                        right_rank: (entries[n_left] >> 32) as u32,
                    });
                }
            }
        }
        Visit::Evaluated
    }
}

/// Sums, for every two-valued feature, the rows of `members` whose bit is set.
fn count_ones(
    members: &[u32],
    bits: &[u64],
    binary_words: usize,
    rows: &[RowWeights],
    ones: &mut [Ones],
) {
    ones.fill(Ones::default());
    for &local in members {
        let local = local as usize;
        let row = rows[local];
        for (word_index, &word) in bits[local * binary_words..(local + 1) * binary_words]
            .iter()
            .enumerate()
        {
            let mut word = word;
            while word != 0 {
                let bit = word_index * 64 + word.trailing_zeros() as usize;
                word &= word - 1;
                let ones = &mut ones[bit];
                ones.count += 1;
                ones.weight += row.weight;
                ones.sum += row.weighted_target;
            }
        }
    }
}

/// The split position of a sorted list that improves on `best` the most, with at least
/// `min_leaf` rows on each side and distinct values on either side of the position.
fn best_position(
    entries: &[u64],
    rows: &[RowWeights],
    total: &Stats,
    min_leaf: usize,
    best: &mut Best,
) -> Option<usize> {
    let n = entries.len();
    let (lowest, highest) = (min_leaf, n - min_leaf);
    let mut weight_left = 0.0;
    let mut sum_left = 0.0;
    for &entry in &entries[..lowest - 1] {
        let row = rows[(entry & ROW_MASK) as usize];
        weight_left += row.weight;
        sum_left += row.weighted_target;
    }
    let mut position = None;
    let (total_weight, total_sum) = (total.weight, total.sum);
    let mut score = best.score;
    // After adding the first row of a pair, the split position is between the two.
    for (offset, pair) in entries[lowest - 1..=highest].windows(2).enumerate() {
        let row = rows[(pair[0] & ROW_MASK) as usize];
        weight_left += row.weight;
        sum_left += row.weighted_target;
        let difference = sum_left * total_weight - total_sum * weight_left;
        let product = weight_left * (total_weight - weight_left);
        let distinct = (pair[0] ^ pair[1]) >> 32 != 0;
        if distinct & (difference * difference > score * product)
            && best.improves(total, weight_left, sum_left)
        {
            score = best.score;
            position = Some(lowest + offset);
        }
    }
    position
}

/// Moves the items whose row goes left to the front, keeping both sides in order.
fn stable_partition<T: Copy>(
    items: &mut [T],
    goes_left: &[bool],
    scratch: &mut [T],
    row_of: impl Fn(T) -> usize,
) {
    let mut left = 0;
    let mut right = 0;
    for i in 0..items.len() {
        let item = items[i];
        let is_left = usize::from(goes_left[row_of(item)]);
        // Branch-free: write to both places, advance one cursor.
        items[left] = item;
        scratch[right] = item;
        left += is_left;
        right += 1 - is_left;
    }
    items[left..].copy_from_slice(&scratch[..right]);
}
