//! Algorithm 2 of Lundberg, Erion and Lee (2018) as written in the paper: the reference the
//! faster formulation in [`super::tree_shap`] is checked against in tests.

use crate::tree::LEAF;
use crate::{Node, Tree};

/// The TreeSHAP contributions of one row, by the paper's `RECURSE`, `EXTEND` and `UNWIND`.
pub(super) fn reference_shap(tree: &Tree, row: &[f32]) -> Vec<f64> {
    let mut out = vec![0.0; row.len()];
    let mut scratch = Scratch::default();
    scratch.prepare(tree.depth(), row.len());
    accumulate(tree.nodes(), row, &mut out, &mut scratch);
    out
}

/// The weights of the left and right children of a split node.
fn child_fractions(nodes: &[Node], node: &Node) -> (f64, f64) {
    let left = nodes[node.left as usize].cover;
    let right = nodes[node.right as usize].cover;
    let total = left + right;
    if total > 0.0 {
        (left / total, right / total)
    } else {
        (0.5, 0.5)
    }
}

/// One feature on the current root-to-node path, with the paper's `z`, `o` and `w`.
#[derive(Debug, Clone, Copy)]
struct PathElement {
    /// The feature, or [`LEAF`] for the placeholder the path starts with.
    feature: u32,
    /// The share of coalitions without the feature that flow down this path (`z`).
    zero: f64,
    /// 1 when the row itself follows the path on this feature, 0 otherwise (`o`).
    one: f64,
    /// The weight of the subsets of the path's features of this element's size (`w`).
    weight: f64,
}

impl PathElement {
    const EMPTY: Self = Self {
        feature: LEAF,
        zero: 0.0,
        one: 0.0,
        weight: 0.0,
    };
}

/// A pending visit of a node, made at `level` below the root from its parent's path.
#[derive(Debug, Clone, Copy)]
struct Visit {
    node: u32,
    level: u32,
    zero: f64,
    one: f64,
    feature: u32,
}

/// Reusable buffers: one path segment per tree level, the path length of each level and the
/// stack of pending visits.
#[derive(Debug, Default)]
struct Scratch {
    path: Vec<PathElement>,
    lengths: Vec<usize>,
    stack: Vec<Visit>,
    /// Capacity of one segment: a path holds the placeholder plus one element per distinct
    /// feature met, so at most `1 + min(depth, n_features)` elements.
    width: usize,
}

impl Scratch {
    /// Sizes the buffers for trees of depth at most `depth` over `n_features` features.
    fn prepare(&mut self, depth: usize, n_features: usize) {
        self.width = depth.min(n_features) + 1;
        self.path.clear();
        self.path
            .resize((depth + 1) * self.width, PathElement::EMPTY);
        self.lengths.clear();
        self.lengths.resize(depth + 1, 0);
        self.stack.clear();
    }
}

/// Runs TreeSHAP for one row and adds the contributions into `out`. The tree must be valid
/// for `row.len()` features and no deeper than what `scratch` was prepared for.
fn accumulate(nodes: &[Node], row: &[f32], out: &mut [f64], scratch: &mut Scratch) {
    let width = scratch.width;
    scratch.stack.clear();
    scratch.stack.push(Visit {
        node: 0,
        level: 0,
        zero: 1.0,
        one: 1.0,
        feature: LEAF,
    });
    while let Some(visit) = scratch.stack.pop() {
        let level = visit.level as usize;
        let (parents, rest) = scratch.path.split_at_mut(level * width);
        let segment = &mut rest[..width];
        // The parent's segment is intact: deeper levels are the only ones written while a
        // node's subtree is being walked.
        let mut len = match level.checked_sub(1) {
            Some(parent) => {
                let parent_len = scratch.lengths[parent];
                let start = parent * width;
                segment[..parent_len].copy_from_slice(&parents[start..start + parent_len]);
                parent_len
            }
            None => 0,
        };
        extend(segment, len, visit.zero, visit.one, visit.feature);
        len += 1;
        let node = &nodes[visit.node as usize];
        if node.is_leaf() {
            add_leaf(&segment[..len], node.value, out);
            continue;
        }
        // A feature met again is unwound from the path and its fractions carried over.
        let (mut incoming_zero, mut incoming_one) = (1.0, 1.0);
        if let Some(previous) = (1..len).find(|&i| segment[i].feature == node.feature) {
            incoming_zero = segment[previous].zero;
            incoming_one = segment[previous].one;
            unwind(segment, len, previous);
            len -= 1;
        }
        scratch.lengths[level] = len;
        let (left, right) = child_fractions(nodes, node);
        // NaN compares false and goes right, as in prediction.
        let goes_left = row[node.feature as usize] <= node.threshold;
        let (hot, hot_fraction, cold, cold_fraction) = if goes_left {
            (node.left, left, node.right, right)
        } else {
            (node.right, right, node.left, left)
        };
        let child_level = visit.level + 1;
        let cold_zero = incoming_zero * cold_fraction;
        if cold_zero != 0.0 {
            scratch.stack.push(Visit {
                node: cold,
                level: child_level,
                zero: cold_zero,
                one: 0.0,
                feature: node.feature,
            });
        }
        let hot_zero = incoming_zero * hot_fraction;
        if hot_zero != 0.0 || incoming_one != 0.0 {
            scratch.stack.push(Visit {
                node: hot,
                level: child_level,
                zero: hot_zero,
                one: incoming_one,
                feature: node.feature,
            });
        }
    }
}

/// Appends a feature with fractions `zero` and `one` to a path of `len` elements (`EXTEND`).
fn extend(path: &mut [PathElement], len: usize, zero: f64, one: f64, feature: u32) {
    let weight = if len == 0 { 1.0 } else { 0.0 };
    path[len] = PathElement {
        feature,
        zero,
        one,
        weight,
    };
    let denominator = (len + 1) as f64;
    for i in (0..len).rev() {
        path[i + 1].weight += one * path[i].weight * (i + 1) as f64 / denominator;
        path[i].weight = zero * path[i].weight * (len - i) as f64 / denominator;
    }
}

/// Removes element `index` from a path of `len` elements, undoing its [`extend`] (`UNWIND`).
/// Never called on an element whose fractions are both zero (such paths are not walked).
fn unwind(path: &mut [PathElement], len: usize, index: usize) {
    let last = len - 1;
    let PathElement { zero, one, .. } = path[index];
    let scale = len as f64;
    let mut next = path[last].weight;
    for j in (0..last).rev() {
        if one != 0.0 {
            let kept = path[j].weight;
            path[j].weight = next * scale / ((j + 1) as f64 * one);
            next = kept - path[j].weight * zero * (last - j) as f64 / scale;
        } else {
            path[j].weight = path[j].weight * scale / (zero * (last - j) as f64);
        }
    }
    for j in index..last {
        path[j].feature = path[j + 1].feature;
        path[j].zero = path[j + 1].zero;
        path[j].one = path[j + 1].one;
    }
}

/// Adds a leaf's share to the contribution of every feature on its path: the total weight of
/// the path with the feature unwound, times `one - zero`, times the leaf value.
fn add_leaf(path: &[PathElement], value: f64, out: &mut [f64]) {
    let last = path.len() - 1;
    let scale = path.len() as f64;
    // For a feature the row does not follow (`one == 0`) the unwound total is
    // `scale / zero * sum_j w_j / (last - j)`: the sum is shared by all such features.
    let mut cold_sum = None;
    for element in &path[1..] {
        let total = if element.one != 0.0 {
            let mut next = path[last].weight;
            let mut total = 0.0;
            for j in (0..last).rev() {
                let share = next / ((j + 1) as f64 * element.one);
                total += share;
                next = path[j].weight - share * element.zero * (last - j) as f64;
            }
            total * scale
        } else {
            let sum = *cold_sum.get_or_insert_with(|| {
                (0..last)
                    .map(|j| path[j].weight / (last - j) as f64)
                    .sum::<f64>()
            });
            sum * scale / element.zero
        };
        out[element.feature as usize] += total * (element.one - element.zero) * value;
    }
}
