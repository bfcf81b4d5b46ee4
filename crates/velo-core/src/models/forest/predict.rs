//! Prediction: the trees of a forest flattened into one array of compact nodes.
//!
//! Each tree is laid out depth first (a left child right after its parent) in 16-byte nodes.
//! A leaf points to itself on both sides, so a row can take exactly `depth` steps in any tree
//! without testing for leaves. Each block of rows (a parallel task) walks one tree after the
//! other, so a tree is fetched from memory once per block; within a tree, groups of rows take
//! one step together, which keeps many independent node loads in flight instead of one
//! dependent chain. Each row's sum adds the trees in order, so the result does not depend on
//! the blocks or the thread count.

use rayon::prelude::*;

use super::super::tree::Tree;

/// Fewest rows in a block (a task of the parallel prediction).
const MIN_BLOCK_ROWS: usize = 256;

/// Rows walked together, in lockstep, down one tree.
const GROUP: usize = 32;

/// Trees walked together for a single row.
const TREE_GROUP: usize = 16;

/// Below this many rows, each row walks groups of trees (`predict_one`): a group of rows
/// this small would walk one tree at a time, a chain of dependent loads per tree.
const FEW_ROWS: usize = 8;

/// One node in the prediction layout.
#[derive(Debug, Clone, Copy, PartialEq)]
struct FlatNode {
    threshold: f32,
    /// The feature tested (0 in a leaf, which points to itself).
    feature: u32,
    /// Absolute index of the left child (the node itself in a leaf).
    left: u32,
    /// Absolute index of the right child (the node itself in a leaf).
    right: u32,
}

/// What a node holds before flattening writes it.
const LEAF_PLACEHOLDER: FlatNode = FlatNode {
    threshold: 0.0,
    feature: 0,
    left: 0,
    right: 0,
};

/// Where a tree starts in the flat layout, and how many steps reach any of its leaves.
#[derive(Debug, Clone, Copy, PartialEq)]
struct FlatTree {
    root: u32,
    depth: u32,
}

/// The prediction layout of a forest.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FlatForest {
    nodes: Vec<FlatNode>,
    /// The value of each node (read at leaves).
    values: Vec<f64>,
    trees: Vec<FlatTree>,
    /// Features per row (at least 1).
    stride: usize,
}

impl FlatForest {
    /// Flattens validated trees; `None` when they have more than `u32::MAX` nodes together.
    ///
    /// Each tree is written in place into its part of one allocation, so flattening needs no
    /// memory beyond the layout itself.
    pub(crate) fn new(trees: &[Tree], n_features: usize) -> Option<Self> {
        let total: usize = trees.iter().map(|tree| tree.nodes().len()).sum();
        u32::try_from(total).ok()?;
        let mut nodes = vec![LEAF_PLACEHOLDER; total];
        let mut values = vec![0.0; total];
        let mut parts = Vec::with_capacity(trees.len());
        let (mut rest_nodes, mut rest_values) = (nodes.as_mut_slice(), values.as_mut_slice());
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
            .map(|(tree, root, tree_nodes, tree_values)| FlatTree {
                root,
                depth: flatten(tree, root, tree_nodes, tree_values),
            })
            .collect();
        Some(Self {
            nodes,
            values,
            trees: flat_trees,
            stride: n_features.max(1),
        })
    }

    /// Features per row in the buffers given to [`FlatForest::predict_block`].
    pub(super) fn stride(&self) -> usize {
        self.stride
    }

    /// Predicts rows stored row-major with [`FlatForest::stride`] values each (one block);
    /// writes one mean per row into `out`.
    ///
    /// Trees are the outer loop, so each tree is fetched from memory once per block and stays
    /// in cache while every row of the block walks it; rows walk it in groups of [`GROUP`]
    /// taking one step together, whose node loads are independent.
    fn predict_block(&self, rows: &[f32], out: &mut [f64], mean: bool) {
        let rows = &rows[..out.len() * self.stride];
        out.fill(0.0);
        let mut at = [0_u32; GROUP];
        for tree in &self.trees {
            for (sums, rows) in out.chunks_mut(GROUP).zip(rows.chunks(GROUP * self.stride)) {
                let at = &mut at[..sums.len()];
                at.fill(tree.root);
                for _ in 0..tree.depth {
                    for (position, row) in at.iter_mut().zip(rows.chunks_exact(self.stride)) {
                        let node = self.nodes[*position as usize];
                        *position = if row[node.feature as usize] <= node.threshold {
                            node.left
                        } else {
                            node.right
                        };
                    }
                }
                for (sum, &position) in sums.iter_mut().zip(at.iter()) {
                    *sum += self.values[position as usize];
                }
            }
        }
        if mean {
            let n_trees = self.trees.len() as f64;
            for value in out {
                *value /= n_trees;
            }
        }
    }

    /// Predicts one row of [`FlatForest::stride`] values, walking groups of trees together.
    pub(super) fn predict_one(&self, row: &[f32]) -> f64 {
        self.sum_one(row) / self.trees.len() as f64
    }

    /// The sum of the trees' values for one row of [`FlatForest::stride`] values.
    pub(crate) fn sum_one(&self, row: &[f32]) -> f64 {
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
                    let node = self.nodes[*position as usize];
                    *position = if row[node.feature as usize] <= node.threshold {
                        node.left
                    } else {
                        node.right
                    };
                }
            }
            // Summed in tree order, as in `predict_block`, so both give the same bits.
            for &position in at.iter() {
                sum += self.values[position as usize];
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
        // Large blocks fetch each tree fewer times; two per thread balance the load.
        let block_rows = n_rows
            .div_ceil(2 * rayon::current_num_threads())
            .max(MIN_BLOCK_ROWS);
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
        let predict = |block: usize, out: &mut [f64]| {
            let first = block * block_rows;
            let mut rows = vec![f32::NAN; out.len() * self.stride];
            for (feature, column) in columns.iter().take(self.stride).enumerate() {
                let values = &column[first..first + out.len()];
                for (row, &value) in rows.chunks_exact_mut(self.stride).zip(values) {
                    row[feature] = value;
                }
            }
            self.predict_block(&rows, out, mean);
        };
        if n_rows <= block_rows {
            // One block: handing it to the thread pool would cost more than predicting it.
            predict(0, &mut out);
        } else {
            out.par_chunks_mut(block_rows)
                .enumerate()
                .for_each(|(block, out)| predict(block, out));
        }
        out
    }
}

/// Writes one tree's nodes into `nodes` (and their values into `values`) in the flat layout:
/// depth first from the root (left before right), absolute indices starting at `offset`.
/// Returns the tree's depth.
fn flatten(tree: &Tree, offset: u32, nodes: &mut [FlatNode], values: &mut [f64]) -> u32 {
    let tree_nodes = tree.nodes();
    let mut order = Vec::with_capacity(tree_nodes.len());
    let mut new_index = vec![0_u32; tree_nodes.len()];
    let mut depth = 0;
    let mut stack = vec![(0_usize, 0_u32)];
    while let Some((old, node_depth)) = stack.pop() {
        new_index[old] = offset + order.len() as u32;
        order.push(old);
        depth = depth.max(node_depth);
        let node = &tree_nodes[old];
        if !node.is_leaf() {
            stack.push((node.right as usize, node_depth + 1));
            stack.push((node.left as usize, node_depth + 1));
        }
    }
    for ((flat, value), &old) in nodes.iter_mut().zip(values.iter_mut()).zip(&order) {
        let node = &tree_nodes[old];
        *value = node.value;
        *flat = if node.is_leaf() {
            let itself = new_index[old];
            FlatNode {
                threshold: 0.0,
                feature: 0,
                left: itself,
                right: itself,
            }
        } else {
            FlatNode {
                threshold: node.threshold,
                feature: node.feature,
                left: new_index[node.left as usize],
                right: new_index[node.right as usize],
            }
        };
    }
    depth
}
