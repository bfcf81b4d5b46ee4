//! Prediction: the trees of a forest flattened into one array of compact nodes.
//!
//! Each tree is laid out depth first (a left child right after its parent) in 8-byte nodes: the
//! threshold, then the feature and the distance to the right child packed in 32 bits (16-byte
//! nodes with absolute child indices when that does not fit). A leaf points to itself, so a row
//! can take exactly `depth` steps in any tree without testing for leaves. Half-size nodes keep
//! twice as many of a large forest's nodes in cache (the default 200-tree forest's 2.7 M nodes
//! take 22 MB instead of 43 MB). A parallel task walks one chunk of [`TREE_CHUNK`] trees, one
//! tree after the other, over a large block of rows, so a tree is fetched from memory once per
//! block; within a tree, groups of rows take one step together, which keeps many independent
//! node loads in flight instead of one dependent chain. Splitting the trees rather than the
//! rows between threads keeps blocks large: the deep nodes of a tree are each reached by few
//! rows, and the more rows a block has, the fewer times each of those nodes is fetched.
//!
//! A row's sum is defined chunk by chunk: the trees of each chunk added in order from zero,
//! then the chunks' sums added in order. Every path (blocks, single rows, any thread count)
//! computes exactly that, so they all give the same bits.

use rayon::prelude::*;

use super::super::tree::Tree;

/// Fewest rows in a block of the parallel prediction.
const MIN_BLOCK_ROWS: usize = 256;

/// Most feature values in a block (its rows, row-major): 2 MiB of `f32`.
const MAX_BLOCK_VALUES: usize = 1 << 19;

/// Trees whose values a row sums apart before adding the sum to the other chunks' (see the
/// module's documentation); a parallel task walks one chunk over a block of rows.
pub(crate) const TREE_CHUNK: usize = 8;

/// Rows walked together, in lockstep, down one tree.
const GROUP: usize = 32;

/// Trees walked together for a single row.
const TREE_GROUP: usize = 16;

// A group of trees holds whole chunks, so `walk_one` sums chunk by chunk.
const _: () = assert!(TREE_GROUP.is_multiple_of(TREE_CHUNK));

/// Below this many rows, each row walks groups of trees (`predict_one`): a group of rows
/// this small would walk one tree at a time, a chain of dependent loads per tree.
const FEW_ROWS: usize = 8;

/// A node of the wide layout (16 bytes), used when a forest does not fit the compact one.
#[derive(Debug, Clone, Copy, PartialEq)]
struct WideNode {
    threshold: f32,
    /// The feature tested (0 in a leaf, which points to itself).
    feature: u32,
    /// Absolute index of the left child (the node itself in a leaf).
    left: u32,
    /// Absolute index of the right child (the node itself in a leaf).
    right: u32,
}

/// A node of the compact layout (8 bytes): the left child is the next node, and `packed` holds
/// the feature in its low bits and the distance to the right child above them. A leaf has a
/// NaN threshold (every comparison fails) and a distance of 0, so it points to itself.
#[derive(Debug, Clone, Copy, PartialEq)]
struct CompactNode {
    threshold: f32,
    packed: u32,
}

/// How a layout moves a row from one node to the next.
trait Step: Sync {
    /// The node a row reaches from node `at`.
    fn step(&self, at: u32, row: &[f32]) -> u32;
}

/// Nodes of 8 bytes: the compact layout, used whenever features and tree sizes fit 32 bits.
#[derive(Debug, Clone, PartialEq)]
struct Compact {
    nodes: Vec<CompactNode>,
    /// Bits of `packed` that hold the feature.
    shift: u32,
    mask: u32,
}

impl Step for Compact {
    #[inline(always)]
    fn step(&self, at: u32, row: &[f32]) -> u32 {
        let node = self.nodes[at as usize];
        let left = row[(node.packed & self.mask) as usize] <= node.threshold;
        // 1 to the left child, `jump` to the right one (0 in a leaf, where the comparison with
        // NaN always fails). The data decides, so a branch would be mispredicted half the time
        // and stall the other rows' loads: select without one.
        at + std::hint::select_unpredictable(left, 1, node.packed >> self.shift)
    }
}

/// Nodes of 16 bytes with absolute child indices.
#[derive(Debug, Clone, PartialEq)]
struct Wide {
    nodes: Vec<WideNode>,
}

impl Step for Wide {
    #[inline(always)]
    fn step(&self, at: u32, row: &[f32]) -> u32 {
        let node = self.nodes[at as usize];
        if row[node.feature as usize] <= node.threshold {
            node.left
        } else {
            node.right
        }
    }
}

/// The nodes of every tree, in one of the two layouts.
#[derive(Debug, Clone, PartialEq)]
enum Nodes {
    Compact(Compact),
    Wide(Wide),
}

/// Where a tree starts in the flat layout, and how many steps reach any of its leaves.
#[derive(Debug, Clone, Copy, PartialEq)]
struct FlatTree {
    root: u32,
    depth: u32,
}

/// The prediction layout of a forest.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FlatForest {
    nodes: Nodes,
    /// The value of each node (read at leaves).
    values: Vec<f64>,
    trees: Vec<FlatTree>,
    /// Features per row (at least 1).
    stride: usize,
}

impl FlatForest {
    /// Flattens validated trees; `None` when they have more than `u32::MAX` nodes together.
    ///
    /// The compact layout is chosen whenever the feature indices and the largest tree fit in
    /// 32 bits together (always, short of millions of features); each tree is written in place
    /// into its part of one allocation, so flattening needs no memory beyond the layout.
    pub(crate) fn new(trees: &[Tree], n_features: usize) -> Option<Self> {
        Self::build(trees, n_features, true)
    }

    fn build(trees: &[Tree], n_features: usize, allow_compact: bool) -> Option<Self> {
        let total: usize = trees.iter().map(|tree| tree.nodes().len()).sum();
        u32::try_from(total).ok()?;
        let stride = n_features.max(1);
        // Bits that hold any feature index (0 for a single feature).
        let shift = usize::BITS - (stride - 1).leading_zeros();
        let largest = trees
            .iter()
            .map(|tree| tree.nodes().len())
            .max()
            .unwrap_or(0);
        let compact =
            allow_compact && shift < u32::BITS && largest as u64 <= u64::from(u32::MAX >> shift);
        let mut values = vec![0.0; total];
        let (nodes, flat_trees) = if compact {
            let mask = (1_u32 << shift) - 1;
            let leaf = |_| CompactNode {
                threshold: f32::NAN,
                packed: 0,
            };
            let (nodes, flat_trees) = lay_out(trees, leaf, &mut values, |node, at, position| {
                // The left child follows its parent; the right one is `jump` nodes further.
                let jump = position[node.right as usize] - at;
                CompactNode {
                    threshold: node.threshold,
                    packed: (jump << shift) | node.feature,
                }
            });
            (Nodes::Compact(Compact { nodes, shift, mask }), flat_trees)
        } else {
            // A leaf points to itself on both sides.
            let leaf = |at| WideNode {
                threshold: 0.0,
                feature: 0,
                left: at,
                right: at,
            };
            let (nodes, flat_trees) =
                lay_out(trees, leaf, &mut values, |node, _, position| WideNode {
                    threshold: node.threshold,
                    feature: node.feature,
                    left: position[node.left as usize],
                    right: position[node.right as usize],
                });
            (Nodes::Wide(Wide { nodes }), flat_trees)
        };
        Some(Self {
            nodes,
            values,
            trees: flat_trees,
            stride,
        })
    }

    /// Features per row in the buffers given to [`FlatForest::predict_block`].
    pub(super) fn stride(&self) -> usize {
        self.stride
    }

    /// Adds the values of `trees` reached by rows stored row-major with
    /// [`FlatForest::stride`] values each (one block) to `sums`, one per row, in tree order.
    ///
    /// Trees are the outer loop, so each tree is fetched from memory once per block and stays
    /// in cache while every row of the block walks it; rows walk it in groups of [`GROUP`]
    /// taking one step together, whose node loads are independent.
    fn walk_trees(&self, trees: &[FlatTree], rows: &[f32], sums: &mut [f64]) {
        match &self.nodes {
            Nodes::Compact(nodes) => self.walk_block(nodes, trees, rows, sums),
            Nodes::Wide(nodes) => self.walk_block(nodes, trees, rows, sums),
        }
    }

    fn walk_block(&self, nodes: &impl Step, trees: &[FlatTree], rows: &[f32], out: &mut [f64]) {
        let rows = &rows[..out.len() * self.stride];
        let mut at = [0_u32; GROUP];
        for tree in trees {
            for (sums, rows) in out.chunks_mut(GROUP).zip(rows.chunks(GROUP * self.stride)) {
                let at = &mut at[..sums.len()];
                at.fill(tree.root);
                for _ in 0..tree.depth {
                    for (position, row) in at.iter_mut().zip(rows.chunks_exact(self.stride)) {
                        *position = nodes.step(*position, row);
                    }
                }
                for (sum, &position) in sums.iter_mut().zip(at.iter()) {
                    *sum += self.values[position as usize];
                }
            }
        }
    }

    /// Predicts one row of [`FlatForest::stride`] values, walking groups of trees together.
    pub(super) fn predict_one(&self, row: &[f32]) -> f64 {
        self.sum_one(row) / self.trees.len() as f64
    }

    /// The sum of the trees' values for one row of [`FlatForest::stride`] values.
    pub(crate) fn sum_one(&self, row: &[f32]) -> f64 {
        match &self.nodes {
            Nodes::Compact(nodes) => self.walk_one(nodes, row),
            Nodes::Wide(nodes) => self.walk_one(nodes, row),
        }
    }

    fn walk_one(&self, nodes: &impl Step, row: &[f32]) -> f64 {
        let row = &row[..self.stride];
        let mut sum = 0.0;
        let mut at = [0_u32; TREE_GROUP];
        for group in self.trees.chunks(TREE_GROUP) {
            let at = &mut at[..group.len()];
            let mut steps = 0;
            for (position, tree) in at.iter_mut().zip(group) {
                *position = tree.root;
                steps = steps.max(tree.depth);
            }
            for _ in 0..steps {
                for position in at.iter_mut() {
                    *position = nodes.step(*position, row);
                }
            }
            // Summed chunk by chunk, as blocks are, so both give the same bits.
            for chunk in at.chunks(TREE_CHUNK) {
                let mut part = 0.0;
                for &position in chunk {
                    part += self.values[position as usize];
                }
                sum += part;
            }
        }
        sum
    }

    /// Predicts every row of a column-major matrix (`columns`, each `n_rows` long; missing
    /// features read as NaN), blocks of rows in parallel.
    pub(super) fn predict_columns(&self, columns: &[Vec<f32>], n_rows: usize) -> Vec<f64> {
        self.walk_columns(columns, n_rows, true)
    }

    /// The sums of the trees' values for every row of a column-major matrix (a boosted
    /// ensemble's raw prediction), as [`FlatForest::predict_columns`] computes means.
    pub(crate) fn sum_columns(&self, columns: &[Vec<f32>], n_rows: usize) -> Vec<f64> {
        self.walk_columns(columns, n_rows, false)
    }

    fn walk_columns(&self, columns: &[Vec<f32>], n_rows: usize, mean: bool) -> Vec<f64> {
        let mut out = vec![0.0; n_rows];
        if n_rows < FEW_ROWS {
            let mut row = vec![f32::NAN; self.stride];
            for (index, out) in out.iter_mut().enumerate() {
                for (value, column) in row.iter_mut().zip(columns) {
                    *value = column[index];
                }
                *out = if mean {
                    self.predict_one(&row)
                } else {
                    self.sum_one(&row)
                };
            }
            return out;
        }
        // Blocks as large as fit `MAX_BLOCK_VALUES`, split further only when the chunks of
        // trees alone give the threads too few tasks to share.
        let threads = rayon::current_num_threads();
        let chunks = self.trees.len().div_ceil(TREE_CHUNK);
        let most_rows = (MAX_BLOCK_VALUES / self.stride).max(MIN_BLOCK_ROWS);
        let blocks = n_rows
            .div_ceil(most_rows)
            .max((4 * threads).div_ceil(chunks.max(1)));
        let block_rows = n_rows.div_ceil(blocks).max(MIN_BLOCK_ROWS);
        let predict = |first: usize, out: &mut [f64]| {
            let mut rows = vec![f32::NAN; out.len() * self.stride];
            for (feature, column) in columns.iter().take(self.stride).enumerate() {
                let values = &column[first..first + out.len()];
                for (row, &value) in rows.chunks_exact_mut(self.stride).zip(values) {
                    row[feature] = value;
                }
            }
            // Below a block's fewest rows, the pool would cost more than the trees.
            self.predict_block(&rows, out, threads > 1 && out.len() >= MIN_BLOCK_ROWS);
            if mean {
                let n_trees = self.trees.len() as f64;
                for value in out {
                    *value /= n_trees;
                }
            }
        };
        if n_rows <= block_rows {
            // One block: handing it to the thread pool would cost more than predicting it.
            predict(0, &mut out);
        } else {
            out.par_chunks_mut(block_rows)
                .enumerate()
                .for_each(|(block, out)| predict(block * block_rows, out));
        }
        out
    }

    /// Writes into `out` the sum of the trees' values for each row of a block (row-major,
    /// [`FlatForest::stride`] values each), chunk by chunk; the chunks in parallel when
    /// `parallel`.
    fn predict_block(&self, rows: &[f32], out: &mut [f64], parallel: bool) {
        let len = out.len();
        out.fill(0.0);
        if parallel && self.trees.len() > TREE_CHUNK {
            let mut parts = vec![0.0; self.trees.len().div_ceil(TREE_CHUNK) * len];
            parts
                .par_chunks_mut(len)
                .zip(self.trees.par_chunks(TREE_CHUNK))
                .for_each(|(part, trees)| self.walk_trees(trees, rows, part));
            for part in parts.chunks_exact(len) {
                for (sum, &value) in out.iter_mut().zip(part) {
                    *sum += value;
                }
            }
        } else {
            let mut part = vec![0.0; len];
            for trees in self.trees.chunks(TREE_CHUNK) {
                part.fill(0.0);
                self.walk_trees(trees, rows, &mut part);
                for (sum, &value) in out.iter_mut().zip(&part) {
                    *sum += value;
                }
            }
        }
    }
}

/// Lays every tree out depth first from its root (left before right) in one allocation, trees
/// in parallel: `node(split, index, positions)` writes a split found at absolute `index`, given
/// the absolute index of every node of its tree; `leaf(index)` writes a leaf. Fills `values`
/// (one per node) and returns the nodes with each tree's root and depth.
fn lay_out<N>(
    trees: &[Tree],
    leaf: impl Fn(u32) -> N + Sync,
    values: &mut [f64],
    node: impl Fn(&super::super::tree::Node, u32, &[u32]) -> N + Sync,
) -> (Vec<N>, Vec<FlatTree>)
where
    N: Copy + Send + Sync,
{
    let mut nodes = vec![leaf(0); values.len()];
    let mut parts = Vec::with_capacity(trees.len());
    let (mut rest_nodes, mut rest_values) = (nodes.as_mut_slice(), values);
    let mut offset = 0;
    for tree in trees {
        let len = tree.nodes().len();
        let (tree_nodes, more_nodes) = rest_nodes.split_at_mut(len);
        let (tree_values, more_values) = rest_values.split_at_mut(len);
        parts.push((tree, offset as u32, tree_nodes, tree_values));
        (rest_nodes, rest_values) = (more_nodes, more_values);
        offset += len;
    }
    let flat_trees = parts
        .into_par_iter()
        .map(|(tree, root, flat, tree_values)| {
            let (order, position, depth) = depth_first(tree, root);
            for ((flat, value), &old) in flat.iter_mut().zip(tree_values.iter_mut()).zip(&order) {
                let split = &tree.nodes()[old];
                *value = split.value;
                *flat = if split.is_leaf() {
                    leaf(position[old])
                } else {
                    node(split, position[old], &position)
                };
            }
            FlatTree { root, depth }
        })
        .collect();
    (nodes, flat_trees)
}

/// A tree's nodes in depth-first order (left before right): the old index of each, the new
/// absolute index (from `offset`) of each old one, and the tree's depth.
fn depth_first(tree: &Tree, offset: u32) -> (Vec<usize>, Vec<u32>, u32) {
    let tree_nodes = tree.nodes();
    let mut order = Vec::with_capacity(tree_nodes.len());
    let mut position = vec![0_u32; tree_nodes.len()];
    let mut depth = 0;
    let mut stack = vec![(0_usize, 0_u32)];
    while let Some((old, node_depth)) = stack.pop() {
        position[old] = offset + order.len() as u32;
        order.push(old);
        depth = depth.max(node_depth);
        let node = &tree_nodes[old];
        if !node.is_leaf() {
            stack.push((node.right as usize, node_depth + 1));
            stack.push((node.left as usize, node_depth + 1));
        }
    }
    (order, position, depth)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::tree::Node;

    /// A random valid tree over `n_features` features: every split's children come after it.
    fn tree(n_features: u32, max_nodes: usize) -> impl Strategy<Value = Tree> {
        prop::collection::vec(
            (0..n_features, -4.0_f32..4.0, -100.0_f64..100.0),
            1..max_nodes,
        )
        .prop_map(|specs| {
            // Node i splits into 2i+1 and 2i+2 while those exist: a heap-shaped tree, of
            // odd size so that every node but the root has a parent.
            let len = specs.len() - (1 - specs.len() % 2);
            let nodes = specs[..len]
                .iter()
                .enumerate()
                .map(|(i, &(feature, threshold, value))| {
                    let (left, right) = (2 * i + 1, 2 * i + 2);
                    if right < len {
                        Node {
                            feature,
                            threshold,
                            left: left as u32,
                            right: right as u32,
                            value,
                            ..Node::leaf(value, 1.0)
                        }
                    } else {
                        Node::leaf(value, 1.0)
                    }
                })
                .collect();
            Tree::new(nodes, 5).expect("a valid tree")
        })
    }

    proptest! {
        /// Both layouts, by block (in parallel or not) and by row, give each tree's own walk,
        /// summed chunk by chunk.
        #[test]
        fn layouts_agree_with_the_trees(
            trees in prop::collection::vec(tree(5, 40), 1..30),
            rows in prop::collection::vec(
                prop::collection::vec(prop_oneof![Just(f32::NAN), -5.0_f32..5.0], 5), 1..70),
        ) {
            let compact = FlatForest::new(&trees, 5).expect("small");
            let wide = FlatForest::build(&trees, 5, false).expect("small");
            prop_assert!(matches!(compact.nodes, Nodes::Compact(_)));
            prop_assert!(matches!(wide.nodes, Nodes::Wide(_)));
            let columns: Vec<Vec<f32>> =
                (0..5).map(|j| rows.iter().map(|row| row[j]).collect()).collect();
            let by_block = compact.sum_columns(&columns, rows.len());
            prop_assert_eq!(&by_block, &wide.sum_columns(&columns, rows.len()));
            let row_major: Vec<f32> = rows.concat();
            let mut sequential = vec![0.0; rows.len()];
            compact.predict_block(&row_major, &mut sequential, false);
            prop_assert_eq!(&by_block, &sequential);
            compact.predict_block(&row_major, &mut sequential, true);
            prop_assert_eq!(&by_block, &sequential);
            for (row, &sum) in rows.iter().zip(&by_block) {
                let expected = trees.chunks(TREE_CHUNK).fold(0.0, |sum, chunk| {
                    sum + chunk.iter().fold(0.0, |part, tree| part + tree.predict_row(row))
                });
                prop_assert_eq!(compact.sum_one(row).to_bits(), expected.to_bits());
                prop_assert_eq!(wide.sum_one(row).to_bits(), expected.to_bits());
                prop_assert_eq!(sum.to_bits(), expected.to_bits());
            }
        }
    }

    #[test]
    fn one_feature_packs_no_feature_bits() {
        let stump = Tree::new(
            vec![
                Node {
                    feature: 0,
                    threshold: 0.5,
                    left: 1,
                    right: 2,
                    ..Node::leaf(0.0, 1.0)
                },
                Node::leaf(1.0, 1.0),
                Node::leaf(2.0, 1.0),
            ],
            1,
        )
        .expect("a valid stump");
        let forest = FlatForest::new(&[stump], 1).expect("small");
        let Nodes::Compact(compact) = &forest.nodes else {
            panic!("a stump fits the compact layout");
        };
        assert_eq!((compact.shift, compact.mask), (0, 0));
        assert_eq!(forest.sum_one(&[0.0]), 1.0);
        assert_eq!(forest.sum_one(&[1.0]), 2.0);
        assert_eq!(forest.sum_one(&[f32::NAN]), 2.0);
    }
}
