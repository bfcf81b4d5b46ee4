//! Exact path-dependent TreeSHAP for regression trees and tree ensembles.
//!
//! The values are those of Lundberg, Erion and Lee (2018), "Consistent individualized feature
//! attribution for tree ensembles" (Algorithm 2): the value of a coalition `S` is the
//! path-dependent conditional expectation `E[f(x) | x_S]`, where a split on a feature of `S`
//! follows the row and a split on any other feature averages both children weighted by their
//! training cover. Covers weight the children as `cover(child) / (cover(left) + cover(right))`,
//! which is `cover(child) / cover(parent)` in a tree built by CART; when both children have
//! zero cover they weigh one half each, so zero-cover nodes never divide by zero.
//!
//! # Computation
//!
//! Algorithm 2 carries, down each path, the weights of every coalition size and unwinds them at
//! each leaf for each feature: `O(leaves * depth^2)` per row and tree. This module computes the
//! same values in `O(nodes * depth)`, with the integral form of Shapley values. For a leaf with
//! value `v` whose path meets the distinct features `U`, where feature `j` lets a fraction `z_j`
//! of the cover through and the row follows it (`o_j = 1`) or not (`o_j = 0`; both products over
//! the feature's splits on the path), the paper's weights sum to
//!
//! ```text
//! phi_i += v * (o_i - z_i) * integral over t in [0, 1] of prod_{j in U, j != i} ((1 - t) z_j + t o_j)
//! ```
//!
//! because the Shapley weight `|S|! (|U| - |S| - 1)! / |U|!` is the Beta integral of
//! `t^|S| (1 - t)^(|U| - |S| - 1)`. The integrand is a polynomial of degree `|U| - 1`, so
//! Gauss–Legendre quadrature with `ceil(|U| / 2)` points (`|U| <= min(depth, features)`)
//! computes it exactly. Holding the path products at the quadrature points, one depth-first walk
//! pushes them down the tree and sums `v * product` back up, and every split adds, for its
//! feature, the integral of the sum below it divided by its own factor. A deeper split on the
//! same feature merges its fractions with the enclosing one (replacing that factor in the
//! products below it) and takes back the share the enclosing split counted for its leaves.
//! Linear TreeSHAP (Yu et al., 2022) exploits the same polynomial structure.
//!
//! The walk of a tree is the same for every row, so eight rows are explained by one walk,
//! one row per lane of the arrays (which the compiler turns into vector instructions). Subtrees
//! that no row reaches and that carry no cover contribute nothing and are skipped, and the walk
//! uses an explicit stack, so very deep trees cannot overflow the thread's stack. The result
//! of a row does not depend on the other rows of its block nor on the number of threads.

use std::f64::consts::PI;

use rayon::prelude::*;

use super::Contributions;
use crate::{FeatureMatrix, ModelError, Node, Tree};

/// Rows explained together, one per SIMD-friendly lane: the walk of a tree is the same for
/// every row, so one walk serves them all.
const LANES: usize = 8;

/// One value per row of a block.
type Lanes = [f64; LANES];

/// The most blocks of rows one parallel task explains.
const MAX_BLOCKS_PER_TASK: usize = 16;

/// Below this, a product of cover fractions counts as zero: the inverses of the factors
/// stay finite, and what is dropped weighs less than `1e-250` of the tree's predictions.
const MIN_SHARE: f64 = 1e-250;

/// Marks the absence of a level in [`Scratch::latest`] and [`Edge::previous`].
const NONE: u32 = u32::MAX;

/// Adds the exact TreeSHAP contribution of each feature of `row` to `out[feature]`.
///
/// `row` holds every feature in matrix order and `out` has one slot per feature. With
/// [`expected_value`] as base, `expected_value(tree) + sum(contributions)` equals
/// `tree.predict_row(row)`; features the tree never tests get exactly zero.
///
/// # Errors
/// [`ModelError::Inputs`] when `out` and `row` differ in length or the tree tests a feature
/// the row does not have.
pub fn tree_shap(tree: &Tree, row: &[f32], out: &mut [f64]) -> Result<(), ModelError> {
    if out.len() != row.len() {
        return Err(ModelError::Inputs {
            message: format!(
                "{} contribution slots for a row of {} features",
                out.len(),
                row.len()
            ),
        });
    }
    if let Some(node) = tree
        .nodes()
        .iter()
        .find(|n| !n.is_leaf() && n.feature as usize >= row.len())
    {
        return Err(ModelError::Inputs {
            message: format!(
                "the tree tests feature {} but the row has {}",
                node.feature,
                row.len()
            ),
        });
    }
    let depth = tree.depth();
    let quadrature = Quadrature::for_path_features(depth.min(row.len()));
    let mut scratch = Scratch::default();
    scratch.prepare(depth, row.len(), quadrature.len());
    let mut block = Block::new(row.len(), 1, |_, feature| row[feature]);
    scratch.explain(tree.nodes(), &quadrature, &mut block);
    block.add_to(out, 1.0);
    Ok(())
}

/// The expected prediction of a tree over its training distribution: the mean of its leaves
/// weighted by the share of cover that reaches them (the root's value for a tree built by
/// CART). This is TreeSHAP's base value.
pub fn expected_value(tree: &Tree) -> f64 {
    let nodes = tree.nodes();
    // Parents come before their children, so one forward pass spreads the probability mass.
    let mut mass = vec![0.0; nodes.len()];
    mass[0] = 1.0;
    let mut expected = 0.0;
    for (index, node) in nodes.iter().enumerate() {
        if node.is_leaf() {
            expected += mass[index] * node.value;
        } else {
            let (left, right) = child_fractions(nodes, node);
            mass[node.left as usize] = mass[index] * left;
            mass[node.right as usize] = mass[index] * right;
        }
    }
    expected
}

/// Exact TreeSHAP for an ensemble whose prediction is the mean of its trees (a random
/// forest): contributions and base value are the means of the trees' own.
#[derive(Debug, Clone)]
pub struct TreeExplainer<'a> {
    trees: &'a [Tree],
    n_features: usize,
    max_depth: usize,
    base_value: f64,
    quadrature: Quadrature,
}

impl<'a> TreeExplainer<'a> {
    /// Prepares the explanation of the mean of `trees`, which read rows of `n_features`.
    ///
    /// # Errors
    /// [`ModelError::Inputs`] when there is no tree or a tree is inconsistent with
    /// `n_features` (see [`Tree::validate`]).
    pub fn new(trees: &'a [Tree], n_features: usize) -> Result<Self, ModelError> {
        if trees.is_empty() {
            return Err(ModelError::Inputs {
                message: "cannot explain an ensemble of 0 trees".to_owned(),
            });
        }
        for (index, tree) in trees.iter().enumerate() {
            tree.validate(n_features)
                .map_err(|message| ModelError::Inputs {
                    message: format!("tree {index}: {message}"),
                })?;
        }
        let max_depth = trees.iter().map(Tree::depth).max().unwrap_or(0);
        let base_value = trees.iter().map(expected_value).sum::<f64>() / trees.len() as f64;
        let quadrature = Quadrature::for_path_features(max_depth.min(n_features));
        Ok(Self {
            trees,
            n_features,
            max_depth,
            base_value,
            quadrature,
        })
    }

    /// The base value: the mean of the trees' [`expected_value`]s.
    pub fn base_value(&self) -> f64 {
        self.base_value
    }

    /// The contributions of every feature to the prediction of every row of `x`, computed in
    /// parallel over blocks of rows; the result does not depend on the number of threads.
    ///
    /// # Errors
    /// [`ModelError::Inputs`] when `x` does not have the ensemble's number of features.
    pub fn shap_values(&self, x: &FeatureMatrix) -> Result<Contributions, ModelError> {
        let width = self.n_features;
        if x.n_features() != width {
            return Err(ModelError::Inputs {
                message: format!(
                    "the rows have {} features, the trees expect {width}",
                    x.n_features()
                ),
            });
        }
        let n_rows = x.n_rows();
        let mut values = vec![0.0; n_rows * width];
        if width > 0 {
            let scale = 1.0 / self.trees.len() as f64;
            // Each task walks every tree once for all of its blocks, while the tree is in cache.
            let n_blocks = n_rows.div_ceil(LANES);
            let per_task = n_blocks
                .div_ceil(rayon::current_num_threads().max(1))
                .clamp(1, MAX_BLOCKS_PER_TASK);
            let columns = x.columns();
            values
                .par_chunks_mut(per_task * LANES * width)
                .enumerate()
                .for_each(|(task, out)| {
                    let first = task * per_task * LANES;
                    let mut blocks: Vec<Block> = out
                        .chunks(LANES * width)
                        .enumerate()
                        .map(|(index, chunk)| {
                            let start = first + index * LANES;
                            Block::new(width, chunk.len() / width, |row, f| columns[f][start + row])
                        })
                        .collect();
                    let mut scratch = Scratch::default();
                    scratch.prepare(self.max_depth, width, self.quadrature.len());
                    for tree in self.trees {
                        for block in &mut blocks {
                            scratch.explain(tree.nodes(), &self.quadrature, block);
                        }
                    }
                    for (block, chunk) in blocks.iter().zip(out.chunks_mut(LANES * width)) {
                        block.add_to(chunk, scale);
                    }
                });
        }
        Ok(Contributions::new(
            x.names().to_vec(),
            self.base_value,
            values,
            n_rows,
        ))
    }
}

/// Builds the lanes `value(lane)`.
#[inline(always)]
fn lanes(value: impl Fn(usize) -> f64) -> Lanes {
    std::array::from_fn(value)
}

/// The weights of the left and right children of a split node (see the module docs).
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

/// Gauss–Legendre points and weights on `[0, 1]`: exact for polynomials of degree below twice
/// the number of points.
#[derive(Debug, Clone, PartialEq)]
struct Quadrature {
    points: Vec<f64>,
    weights: Vec<f64>,
    /// `1 / (1 - t)` at each point.
    inverse_complements: Vec<f64>,
}

impl Quadrature {
    /// Enough points to integrate the products of paths meeting up to `max_features`
    /// distinct features (polynomials of degree `max_features - 1`).
    fn for_path_features(max_features: usize) -> Self {
        Self::gauss_legendre(max_features.div_ceil(2).max(1))
    }

    /// The `n`-point rule: the roots of the Legendre polynomial `P_n`, found by Newton's method
    /// from the usual cosine guesses, mapped from `[-1, 1]` to `[0, 1]`.
    fn gauss_legendre(n: usize) -> Self {
        let (mut points, mut weights) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for i in 0..n {
            let mut x = (PI * (i as f64 + 0.75) / (n as f64 + 0.5)).cos();
            for _ in 0..100 {
                let (value, slope) = legendre(n, x);
                let step = value / slope;
                x -= step;
                if step.abs() <= 1e-16 {
                    break;
                }
            }
            let (_, slope) = legendre(n, x);
            points.push((1.0 + x) / 2.0);
            weights.push(1.0 / ((1.0 - x * x) * slope * slope));
        }
        let inverse_complements = points.iter().map(|t| 1.0 / (1.0 - t)).collect();
        Self {
            points,
            weights,
            inverse_complements,
        }
    }

    /// Number of points.
    fn len(&self) -> usize {
        self.points.len()
    }
}

/// The Legendre polynomial `P_n` and its derivative at `x` (for `-1 < x < 1`), by the
/// three-term recurrence.
fn legendre(n: usize, x: f64) -> (f64, f64) {
    let (mut previous, mut current) = (1.0, x);
    for k in 2..=n {
        let k = k as f64;
        (previous, current) = (
            current,
            ((2.0 * k - 1.0) * x * current - (k - 1.0) * previous) / k,
        );
    }
    if n == 0 {
        return (1.0, 0.0);
    }
    (current, n as f64 * (x * current - previous) / (x * x - 1.0))
}

/// The split leading to the node at some level: its feature with the fractions merged over
/// every split on that feature down to here, and the level of the previous such split.
#[derive(Debug, Clone, Copy)]
struct Edge {
    feature: u32,
    /// Product of the cover fractions of the feature's splits on the path (`z`), the same
    /// for every row.
    zero: f64,
    /// Per row: 1 when the row follows all of them, else 0 (`o`).
    one: Lanes,
    /// The level of the enclosing split on the same feature, or [`NONE`].
    previous: u32,
}

/// One step of the depth-first walk.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// Enter `node` at `level`, the left or right child of `parent`.
    Enter {
        node: u32,
        level: u32,
        parent: u32,
        left: bool,
    },
    /// Leave the node at `level`, all of its subtree done.
    Exit { level: u32 },
}

/// A block of 1 to [`LANES`] rows, stored feature by feature (unused lanes repeat the first
/// row), with the contributions gathered for them so far.
#[derive(Debug)]
struct Block {
    rows: Vec<[f32; LANES]>,
    n_rows: usize,
    contributions: Vec<Lanes>,
}

impl Block {
    /// The block of `n_rows` rows of `n_features`, `value(row, feature)` each.
    fn new(n_features: usize, n_rows: usize, value: impl Fn(usize, usize) -> f32) -> Self {
        debug_assert!(
            (1..=LANES).contains(&n_rows),
            "a block holds 1 to {LANES} rows"
        );
        let rows = (0..n_features)
            .map(|feature| {
                std::array::from_fn(|lane| value(if lane < n_rows { lane } else { 0 }, feature))
            })
            .collect();
        Self {
            rows,
            n_rows,
            contributions: vec![[0.0; LANES]; n_features],
        }
    }

    /// Adds the gathered contributions, times `scale`, to `out` (row-major, one row per row
    /// of the block).
    fn add_to(&self, out: &mut [f64], scale: f64) {
        let width = self.rows.len();
        for (lane, phi) in out.chunks_exact_mut(width).take(self.n_rows).enumerate() {
            for (value, contributions) in phi.iter_mut().zip(&self.contributions) {
                *value += contributions[lane] * scale;
            }
        }
    }
}

/// The buffers of the walk, reused across blocks and trees.
///
/// Values are kept per level and per quadrature point, one lane per row: the path product at
/// the node, the running sum of `value * product` over the leaves below it, and the inverse of
/// the node's merged factor (0 where the factor is 0: such a path carries no weight for that
/// row). Per feature: the level of its latest split on the current path.
#[derive(Debug, Default)]
struct Scratch {
    points: usize,
    product: Vec<Lanes>,
    subtree: Vec<Lanes>,
    inverse: Vec<Lanes>,
    edges: Vec<Edge>,
    latest: Vec<u32>,
    stack: Vec<Step>,
    /// The inverse merged factor of a row that follows the splits, per quadrature point.
    inverse_ones: Vec<f64>,
}

impl Scratch {
    /// Sizes the buffers for trees of depth at most `depth` over `n_features` features and a
    /// quadrature of `points` points.
    fn prepare(&mut self, depth: usize, n_features: usize, points: usize) {
        let levels = depth + 1;
        self.points = points;
        for buffer in [&mut self.product, &mut self.subtree, &mut self.inverse] {
            buffer.clear();
            buffer.resize(levels * points, [0.0; LANES]);
        }
        let edge = Edge {
            feature: NONE,
            zero: 0.0,
            one: [0.0; LANES],
            previous: NONE,
        };
        self.edges.clear();
        self.edges.resize(levels, edge);
        self.latest.clear();
        self.latest.resize(n_features, NONE);
        self.stack.clear();
        self.inverse_ones.clear();
        self.inverse_ones.resize(points, 0.0);
    }

    /// Adds the TreeSHAP values of the rows of `block` for one tree to the block's
    /// contributions. The tree must be valid for the block's features and no deeper than what
    /// the scratch was prepared for, with `quadrature` of the prepared size.
    fn explain(&mut self, nodes: &[Node], quadrature: &Quadrature, block: &mut Block) {
        debug_assert_eq!(
            self.points,
            quadrature.len(),
            "prepared for this quadrature"
        );
        if nodes[0].is_leaf() {
            return;
        }
        self.stack.clear();
        self.product[..self.points].fill([1.0; LANES]);
        self.open_split(&nodes[0], 0, 0);
        while let Some(step) = self.stack.pop() {
            match step {
                Step::Enter {
                    node,
                    level,
                    parent,
                    left,
                } => {
                    let (index, level) = (node as usize, level as usize);
                    let Some(edge) = self.edge(nodes, block, parent as usize, left) else {
                        continue;
                    };
                    let node = &nodes[index];
                    if node.is_leaf() {
                        self.leaf(quadrature, block, level, &edge, node.value);
                    } else {
                        self.enter(quadrature, level, edge);
                        self.open_split(node, index, level);
                    }
                }
                Step::Exit { level } => self.exit(quadrature, block, level as usize),
            }
        }
    }

    /// Starts the subtree of the split `node` (at `index`), entered at `level`: schedules its
    /// children, then its own exit.
    fn open_split(&mut self, node: &Node, index: usize, level: usize) {
        let m = self.points;
        self.subtree[level * m..(level + 1) * m].fill([0.0; LANES]);
        if level > 0 {
            self.stack.push(Step::Exit {
                level: level as u32,
            });
        }
        let (parent, level) = (index as u32, level as u32 + 1);
        self.stack.push(Step::Enter {
            node: node.right,
            level,
            parent,
            left: false,
        });
        self.stack.push(Step::Enter {
            node: node.left,
            level,
            parent,
            left: true,
        });
    }

    /// The split into the `left` (or right) child of `nodes[parent]`, merged with the
    /// enclosing split on the same feature; `None` when the child's subtree carries no weight
    /// for any row (no cover, and no row follows it): it contributes nothing.
    fn edge(&self, nodes: &[Node], block: &Block, parent: usize, left: bool) -> Option<Edge> {
        let split = &nodes[parent];
        let feature = split.feature as usize;
        let (left_cover, right_cover) = (
            nodes[split.left as usize].cover,
            nodes[split.right as usize].cover,
        );
        // As `child_fractions`, with one division.
        let total = left_cover + right_cover;
        let fraction = match (total > 0.0, left) {
            (true, true) => left_cover / total,
            (true, false) => right_cover / total,
            (false, _) => 0.5,
        };
        let values = &block.rows[feature];
        // NaN compares false and goes right, as in prediction.
        let hot = lanes(|lane| {
            if (values[lane] <= split.threshold) == left {
                1.0
            } else {
                0.0
            }
        });
        let previous = self.latest[feature];
        let (zero, one) = match previous {
            NONE => (fraction, hot),
            p => {
                let edge = &self.edges[p as usize];
                (
                    edge.zero * fraction,
                    lanes(|lane| hot[lane] * edge.one[lane]),
                )
            }
        };
        if zero >= MIN_SHARE {
            Some(Edge {
                feature: split.feature,
                zero,
                one,
                previous,
            })
        } else if one.iter().any(|&o| o != 0.0) {
            Some(Edge {
                feature: split.feature,
                zero: 0.0,
                one,
                previous,
            })
        } else {
            None
        }
    }

    /// Enters the split node at `level` through `edge`: records the edge, the node's path
    /// product and the inverses of its merged factor.
    fn enter(&mut self, quadrature: &Quadrature, level: usize, edge: Edge) {
        let m = self.points;
        self.edges[level] = edge;
        self.latest[edge.feature as usize] = level as u32;
        let (zero, one) = (edge.zero, edge.one);
        let off = lanes(|lane| 1.0 - one[lane]);
        let (inverses_before, inverses_here) = self.inverse.split_at_mut(level * m);
        let enclosing = match edge.previous {
            NONE => None,
            p => Some(&inverses_before[p as usize * m..(p as usize + 1) * m]),
        };
        let (products_before, products_here) = self.product.split_at_mut(level * m);
        let parents = &products_before[(level - 1) * m..];
        for (k, (product, parent)) in products_here[..m].iter_mut().zip(parents).enumerate() {
            let t = quadrature.points[k];
            let (factor_one, factor_zero) = (zero + (1.0 - zero) * t, zero * (1.0 - t));
            let ratio = enclosing.map_or([1.0; LANES], |inverses| inverses[k]);
            // With o in {0, 1} the blends are exact.
            *product = lanes(|lane| {
                parent[lane] * ratio[lane] * (one[lane] * factor_one + off[lane] * factor_zero)
            });
        }
        // A row that does not follow the splits has factor z (1 - t), inverse 0 when z = 0.
        let inverse_zero = if zero > 0.0 { 1.0 / zero } else { 0.0 };
        for (k, inverse) in inverses_here[..m].iter_mut().enumerate() {
            let t = quadrature.points[k];
            let inverse_one = 1.0 / (zero + (1.0 - zero) * t);
            let inverse_zero = inverse_zero * quadrature.inverse_complements[k];
            *inverse = lanes(|lane| one[lane] * inverse_one + off[lane] * inverse_zero);
        }
    }

    /// A leaf of `value` reached through `edge` at `level`: adds its value times the path
    /// product to the parent's sum, and its integral to the feature's contributions.
    fn leaf(
        &mut self,
        quadrature: &Quadrature,
        block: &mut Block,
        level: usize,
        edge: &Edge,
        value: f64,
    ) {
        let m = self.points;
        let (zero, one) = (edge.zero, edge.one);
        let off = lanes(|lane| 1.0 - one[lane]);
        let enclosing_inverses = match edge.previous {
            NONE => None,
            p => Some(&self.inverse[p as usize * m..(p as usize + 1) * m]),
        };
        let parents = &self.product[(level - 1) * m..level * m];
        let parent_sums = &mut self.subtree[(level - 1) * m..level * m];
        let mut integral = [0.0; LANES];
        let mut enclosing = [0.0; LANES];
        for (k, (parent_sum, parent)) in parent_sums.iter_mut().zip(parents).enumerate() {
            let (t, weight) = (quadrature.points[k], quadrature.weights[k]);
            let (factor_one, factor_zero) = (zero + (1.0 - zero) * t, zero * (1.0 - t));
            // The product without the edge's own factor: the integrand, which never divides by
            // a factor of 0 (only found where o - z = 0 too).
            let without = match enclosing_inverses {
                None => *parent,
                Some(inverses) => {
                    let ratio = inverses[k];
                    lanes(|lane| parent[lane] * ratio[lane])
                }
            };
            let sums = lanes(|lane| {
                value * without[lane] * (one[lane] * factor_one + off[lane] * factor_zero)
            });
            let current = *parent_sum;
            *parent_sum = lanes(|lane| current[lane] + sums[lane]);
            integral = lanes(|lane| integral[lane] + weight * value * without[lane]);
            if let Some(inverses) = enclosing_inverses {
                let ratio = inverses[k];
                enclosing = lanes(|lane| enclosing[lane] + weight * sums[lane] * ratio[lane]);
            }
        }
        self.add(block, edge, integral, enclosing);
    }

    /// Leaves the split node at `level`: adds its integral to the feature's contributions,
    /// hands its leaf sum to its parent, and restores the feature's previous split.
    fn exit(&mut self, quadrature: &Quadrature, block: &mut Block, level: usize) {
        let m = self.points;
        let edge = self.edges[level];
        let enclosing_inverses = match edge.previous {
            NONE => None,
            p => Some(&self.inverse[p as usize * m..(p as usize + 1) * m]),
        };
        let inverses = &self.inverse[level * m..(level + 1) * m];
        let (sums_before, sums_here) = self.subtree.split_at_mut(level * m);
        let parent_sums = &mut sums_before[(level - 1) * m..];
        let mut integral = [0.0; LANES];
        let mut enclosing = [0.0; LANES];
        for (k, ((parent_sum, sums), inverse)) in parent_sums
            .iter_mut()
            .zip(&sums_here[..m])
            .zip(inverses)
            .enumerate()
        {
            let weight = quadrature.weights[k];
            integral = lanes(|lane| integral[lane] + weight * sums[lane] * inverse[lane]);
            if let Some(ratios) = enclosing_inverses {
                let ratio = ratios[k];
                enclosing = lanes(|lane| enclosing[lane] + weight * sums[lane] * ratio[lane]);
            }
            let current = *parent_sum;
            *parent_sum = lanes(|lane| current[lane] + sums[lane]);
        }
        self.latest[edge.feature as usize] = edge.previous;
        self.add(block, &edge, integral, enclosing);
    }

    /// Adds `(o - z) * integral` to the contribution of the edge's feature for every row. The
    /// enclosing split on the same feature, if any, counted the leaves below this edge with its
    /// own factor: `enclosing` (their integral with that factor) takes that share back.
    fn add(&self, block: &mut Block, edge: &Edge, integral: Lanes, enclosing: Lanes) {
        let phi = &mut block.contributions[edge.feature as usize];
        let current = *phi;
        let (one, zero) = (edge.one, edge.zero);
        *phi = match edge.previous {
            NONE => lanes(|lane| current[lane] + (one[lane] - zero) * integral[lane]),
            p => {
                let outer = &self.edges[p as usize];
                let (outer_one, outer_zero) = (outer.one, outer.zero);
                lanes(|lane| {
                    current[lane] + (one[lane] - zero) * integral[lane]
                        - (outer_one[lane] - outer_zero) * enclosing[lane]
                })
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::super::tree_shap_reference::reference_shap;
    use super::*;

    fn split(feature: u32, threshold: f32, left: u32, right: u32, value: f64, cover: f64) -> Node {
        Node {
            feature,
            threshold,
            left,
            right,
            value,
            cover,
            gain: 0.0,
        }
    }

    /// x0 <= 0.5 ? (x1 <= 0.5 ? 1 (cover 1) : 3 (cover 3)) : 6 (cover 6).
    fn two_feature_tree() -> Tree {
        let nodes = vec![
            split(0, 0.5, 1, 4, 4.6, 10.0),
            split(1, 0.5, 2, 3, 2.5, 4.0),
            Node::leaf(1.0, 1.0),
            Node::leaf(3.0, 3.0),
            Node::leaf(6.0, 6.0),
        ];
        Tree::new(nodes, 2).expect("valid tree")
    }

    fn shap(tree: &Tree, row: &[f32]) -> Vec<f64> {
        let mut out = vec![0.0; row.len()];
        tree_shap(tree, row, &mut out).expect("explains");
        out
    }

    fn assert_close(actual: &[f64], expected: &[f64], tolerance: f64) {
        assert_eq!(actual.len(), expected.len());
        for (a, e) in actual.iter().zip(expected) {
            assert!(
                (a - e).abs() <= tolerance * e.abs().max(1.0),
                "{actual:?} != {expected:?}"
            );
        }
    }

    #[test]
    fn hand_computed_two_feature_tree() {
        // E[f] = 0.4 * (0.25 * 1 + 0.75 * 3) + 0.6 * 6 = 4.6.
        let tree = two_feature_tree();
        assert!((expected_value(&tree) - 4.6).abs() < 1e-12);
        // Row (0, 1) reaches 3: v({0}) = 2.5, v({1}) = 0.4 * 3 + 0.6 * 6 = 4.8, v({0, 1}) = 3,
        // so phi0 = ((2.5 - 4.6) + (3 - 4.8)) / 2 and phi1 = ((4.8 - 4.6) + (3 - 2.5)) / 2.
        assert_close(&shap(&tree, &[0.0, 1.0]), &[-1.95, 0.35], 1e-12);
        // Row (1, 0) reaches 6: v({0}) = 6, v({1}) = 0.4 * 1 + 3.6 = 4, v({0, 1}) = 6.
        assert_close(&shap(&tree, &[1.0, 0.0]), &[1.7, -0.3], 1e-12);
        // NaN goes right like in prediction: row (NaN, 0) is explained as row (1, 0).
        assert_close(&shap(&tree, &[f32::NAN, 0.0]), &[1.7, -0.3], 1e-12);
    }

    #[test]
    fn contributions_accumulate_into_out() {
        let tree = two_feature_tree();
        let mut out = vec![1.0, 1.0];
        tree_shap(&tree, &[0.0, 1.0], &mut out).expect("explains");
        assert_close(&out, &[-0.95, 1.35], 1e-12);
    }

    #[test]
    fn zero_cover_branches_are_safe() {
        // The right child of the root and one grandchild never saw a training row.
        let nodes = vec![
            split(0, 0.5, 1, 4, 2.0, 4.0),
            split(1, 0.5, 2, 3, 2.0, 4.0),
            Node::leaf(2.0, 4.0),
            Node::leaf(7.0, 0.0),
            split(1, 0.5, 5, 6, 0.0, 0.0),
            Node::leaf(-1.0, 0.0),
            Node::leaf(5.0, 0.0),
        ];
        let tree = Tree::new(nodes, 2).expect("valid tree");
        assert_eq!(expected_value(&tree), 2.0);
        for row in [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]] {
            let phi = shap(&tree, &row);
            assert!(phi.iter().all(|value| value.is_finite()), "{phi:?}");
            let total = expected_value(&tree) + phi.iter().sum::<f64>();
            assert!(
                (total - tree.predict_row(&row)).abs() < 1e-12,
                "row {row:?}: {phi:?}"
            );
            assert_close(&phi, &brute_force_shapley(&tree, &row), 1e-12);
        }
        // A tree whose covers are all zero weighs children equally.
        let nodes = vec![
            split(0, 0.5, 1, 2, 0.0, 0.0),
            Node::leaf(1.0, 0.0),
            Node::leaf(3.0, 0.0),
        ];
        let tree = Tree::new(nodes, 1).expect("valid tree");
        assert_eq!(expected_value(&tree), 2.0);
        assert_eq!(shap(&tree, &[1.0]), vec![1.0]);
    }

    #[test]
    fn a_lone_leaf_has_no_contributions() {
        let tree = Tree::new(vec![Node::leaf(3.0, 5.0)], 2).expect("valid tree");
        assert_eq!(expected_value(&tree), 3.0);
        assert_eq!(shap(&tree, &[1.0, 2.0]), vec![0.0, 0.0]);
    }

    #[test]
    fn dimension_mismatches_are_errors() {
        let tree = two_feature_tree();
        let mut out = vec![0.0; 3];
        assert!(matches!(
            tree_shap(&tree, &[0.0, 1.0], &mut out),
            Err(ModelError::Inputs { .. })
        ));
        let mut out = vec![0.0; 1];
        assert!(matches!(
            tree_shap(&tree, &[0.0], &mut out),
            Err(ModelError::Inputs { .. })
        ));

        let trees = vec![tree];
        assert!(matches!(
            TreeExplainer::new(&trees, 1),
            Err(ModelError::Inputs { .. })
        ));
        assert!(matches!(
            TreeExplainer::new(&[], 2),
            Err(ModelError::Inputs { .. })
        ));
        let explainer = TreeExplainer::new(&trees, 2).expect("valid ensemble");
        let x = matrix(&[vec![0.0, 1.0, 2.0]]);
        assert!(matches!(
            explainer.shap_values(&x),
            Err(ModelError::Inputs { .. })
        ));
    }

    #[test]
    fn ensembles_explain_many_blocks_of_rows() {
        let trees = vec![two_feature_tree(), two_feature_tree()];
        let explainer = TreeExplainer::new(&trees, 2).expect("valid ensemble");
        assert!((explainer.base_value() - 4.6).abs() < 1e-12);
        let rows: Vec<Vec<f32>> = (0..21)
            .map(|i| vec![(i % 2) as f32, f32::from(u8::from(i % 3 == 0))])
            .collect();
        let contributions = explainer.shap_values(&matrix(&rows)).expect("explains");
        assert_eq!(contributions.n_rows(), 21);
        assert_eq!(contributions.names(), ["f0", "f1"]);
        for (index, row) in rows.iter().enumerate() {
            let expected = shap(&trees[0], row);
            assert_close(contributions.row(index).expect("row"), &expected, 1e-12);
        }
    }

    /// A matrix named `f0, f1, ...` from rows.
    fn matrix(rows: &[Vec<f32>]) -> FeatureMatrix {
        let width = rows.first().map_or(0, Vec::len);
        let columns = (0..width)
            .map(|f| rows.iter().map(|row| row[f]).collect())
            .collect();
        let names = (0..width).map(|f| format!("f{f}")).collect();
        FeatureMatrix::from_columns(names, columns).expect("rectangular rows")
    }

    /// `E[f(x) | x_S]`, following the row on features of `subset` (a bit set) and averaging
    /// the children by cover on the others.
    fn conditional_expectation(nodes: &[Node], index: usize, row: &[f32], subset: u32) -> f64 {
        let node = &nodes[index];
        if node.is_leaf() {
            return node.value;
        }
        let (left, right) = (node.left as usize, node.right as usize);
        if subset & (1 << node.feature) != 0 {
            let next = if row[node.feature as usize] <= node.threshold {
                left
            } else {
                right
            };
            return conditional_expectation(nodes, next, row, subset);
        }
        let (left_cover, right_cover) = (nodes[left].cover, nodes[right].cover);
        let (left_weight, right_weight) = if left_cover + right_cover > 0.0 {
            (
                left_cover / (left_cover + right_cover),
                right_cover / (left_cover + right_cover),
            )
        } else {
            (0.5, 0.5)
        };
        left_weight * conditional_expectation(nodes, left, row, subset)
            + right_weight * conditional_expectation(nodes, right, row, subset)
    }

    /// Shapley values by enumerating every subset of the row's features.
    fn brute_force_shapley(tree: &Tree, row: &[f32]) -> Vec<f64> {
        let n = row.len();
        let factorial = |k: usize| (1..=k).map(|i| i as f64).product::<f64>();
        let value = |subset: u32| conditional_expectation(tree.nodes(), 0, row, subset);
        (0..n)
            .map(|feature| {
                let bit = 1_u32 << feature;
                (0..1_u32 << n)
                    .filter(|subset| subset & bit == 0)
                    .map(|subset| {
                        let size = subset.count_ones() as usize;
                        let weight = factorial(size) * factorial(n - size - 1) / factorial(n);
                        weight * (value(subset | bit) - value(subset))
                    })
                    .sum()
            })
            .collect()
    }

    /// A generated tree before flattening.
    #[derive(Debug, Clone)]
    enum Shape {
        Leaf {
            value: f64,
            cover: f64,
        },
        Split {
            feature: u32,
            threshold: f32,
            left: Box<Shape>,
            right: Box<Shape>,
        },
    }

    impl Shape {
        fn cover(&self) -> f64 {
            match self {
                Self::Leaf { cover, .. } => *cover,
                Self::Split { left, right, .. } => left.cover() + right.cover(),
            }
        }

        fn value(&self) -> f64 {
            match self {
                Self::Leaf { value, .. } => *value,
                Self::Split { left, right, .. } => {
                    let (l, r) = (left.cover(), right.cover());
                    if l + r > 0.0 {
                        (l * left.value() + r * right.value()) / (l + r)
                    } else {
                        (left.value() + right.value()) / 2.0
                    }
                }
            }
        }

        /// Appends the subtree in pre-order (children after their parent) and returns its root.
        fn flatten(&self, nodes: &mut Vec<Node>) -> u32 {
            let index = nodes.len();
            nodes.push(Node::leaf(self.value(), self.cover()));
            if let Self::Split {
                feature,
                threshold,
                left,
                right,
            } = self
            {
                let left = left.flatten(nodes);
                let right = right.flatten(nodes);
                nodes[index] = split(
                    *feature,
                    *threshold,
                    left,
                    right,
                    self.value(),
                    self.cover(),
                );
            }
            index as u32
        }
    }

    /// Thresholds and row values come from a small grid so rows hit thresholds exactly.
    const GRID: [f32; 5] = [0.0, 0.5, 1.0, 1.5, 2.0];

    fn shape(n_features: u32) -> impl Strategy<Value = Shape> {
        let leaf = (
            -10.0..10.0_f64,
            prop_oneof![1 => Just(0.0), 4 => 1.0..20.0_f64],
        )
            .prop_map(|(value, cover)| Shape::Leaf { value, cover });
        leaf.prop_recursive(4, 31, 2, move |inner| {
            (
                0..n_features,
                prop::sample::select(&GRID[..]),
                inner.clone(),
                inner,
            )
                .prop_map(|(feature, threshold, left, right)| Shape::Split {
                    feature,
                    threshold,
                    left: Box::new(left),
                    right: Box::new(right),
                })
        })
    }

    fn tree_strategy(n_features: usize) -> impl Strategy<Value = Tree> {
        shape(n_features as u32).prop_map(move |shape| {
            let mut nodes = Vec::new();
            shape.flatten(&mut nodes);
            Tree::new(nodes, n_features).expect("generated trees are valid")
        })
    }

    fn row_strategy(n_features: usize) -> impl Strategy<Value = Vec<f32>> {
        let value = prop_oneof![8 => prop::sample::select(&GRID[..]), 1 => Just(f32::NAN)];
        prop::collection::vec(value, n_features)
    }

    fn tree_and_row() -> impl Strategy<Value = (Tree, Vec<f32>)> {
        (1..=5_usize).prop_flat_map(|n| (tree_strategy(n), row_strategy(n)))
    }

    fn ensemble_and_rows() -> impl Strategy<Value = (Vec<Tree>, Vec<Vec<f32>>)> {
        (1..=5_usize).prop_flat_map(|n| {
            (
                prop::collection::vec(tree_strategy(n), 1..5),
                prop::collection::vec(row_strategy(n), 1..12),
            )
        })
    }

    #[test]
    fn quadrature_integrates_polynomials_exactly() {
        for n in [1, 2, 3, 6, 10, 25, 60, 200] {
            let quadrature = Quadrature::gauss_legendre(n);
            assert_eq!(quadrature.len(), n);
            assert!(quadrature.points.iter().all(|&t| t > 0.0 && t < 1.0));
            for degree in 0..2 * n {
                let integral: f64 = quadrature
                    .points
                    .iter()
                    .zip(&quadrature.weights)
                    .map(|(t, w)| w * t.powi(degree as i32))
                    .sum();
                let exact = 1.0 / (degree + 1) as f64;
                assert!(
                    (integral - exact).abs() < 1e-13,
                    "n {n}, degree {degree}: {integral}"
                );
            }
        }
    }

    /// A random tree of depth `depth`: a path of full depth, with side branches growing at
    /// random; splits on random features at grid thresholds, integer covers (some zero) and
    /// values consistent with the leaves.
    fn random_tree(rng: &mut ChaCha8Rng, depth: usize, n_features: usize) -> Tree {
        fn grow(
            rng: &mut ChaCha8Rng,
            nodes: &mut Vec<Node>,
            depth: usize,
            n_features: usize,
            spine: bool,
        ) -> (f64, f64) {
            let index = nodes.len();
            nodes.push(Node::leaf(0.0, 0.0));
            if depth == 0 || (!spine && rng.random_bool(0.6)) {
                let cover = if rng.random_bool(0.1) {
                    0.0
                } else {
                    f64::from(rng.random_range(1..50_u32))
                };
                let value = rng.random_range(-100.0..100.0);
                nodes[index] = Node::leaf(value, cover);
                return (value, cover);
            }
            let feature = rng.random_range(0..n_features as u32);
            let threshold = GRID[rng.random_range(0..GRID.len())];
            let left_spine = spine && rng.random_bool(0.5);
            let left = nodes.len() as u32;
            let (left_value, left_cover) = grow(rng, nodes, depth - 1, n_features, left_spine);
            let right = nodes.len() as u32;
            let right_spine = spine && !left_spine;
            let (right_value, right_cover) = grow(rng, nodes, depth - 1, n_features, right_spine);
            let cover = left_cover + right_cover;
            let value = if cover > 0.0 {
                (left_value * left_cover + right_value * right_cover) / cover
            } else {
                (left_value + right_value) / 2.0
            };
            nodes[index] = split(feature, threshold, left, right, value, cover);
            (value, cover)
        }
        let mut nodes = Vec::new();
        grow(rng, &mut nodes, depth, n_features, true);
        let tree = Tree::new(nodes, n_features).expect("generated trees are valid");
        assert_eq!(tree.depth(), depth);
        tree
    }

    fn random_row(rng: &mut ChaCha8Rng, n_features: usize) -> Vec<f32> {
        (0..n_features)
            .map(|_| {
                if rng.random_bool(0.05) {
                    f32::NAN
                } else {
                    GRID[rng.random_range(0..GRID.len())]
                }
            })
            .collect()
    }

    proptest! {
        #[test]
        fn contributions_add_up_to_the_prediction((tree, row) in tree_and_row()) {
            let phi = shap(&tree, &row);
            let prediction = tree.predict_row(&row);
            let total = expected_value(&tree) + phi.iter().sum::<f64>();
            prop_assert!((total - prediction).abs() <= 1e-9 * prediction.abs().max(1.0),
                "{total} != {prediction}");
        }

        #[test]
        fn contributions_equal_brute_force_shapley_values((tree, row) in tree_and_row()) {
            let phi = shap(&tree, &row);
            let expected = brute_force_shapley(&tree, &row);
            for (a, e) in phi.iter().zip(&expected) {
                prop_assert!((a - e).abs() <= 1e-9 * e.abs().max(1.0), "{phi:?} != {expected:?}");
            }
        }

        #[test]
        fn unused_features_get_exactly_zero((tree, row) in tree_and_row()) {
            let phi = shap(&tree, &row);
            for (feature, value) in phi.iter().enumerate() {
                let used = tree.nodes().iter().any(|n| !n.is_leaf() && n.feature as usize == feature);
                prop_assert!(used || *value == 0.0, "feature {feature} unused but got {value}");
            }
        }

        #[test]
        fn ensembles_average_their_trees((trees, rows) in ensemble_and_rows()) {
            let n_features = rows[0].len();
            let explainer = TreeExplainer::new(&trees, n_features).expect("valid ensemble");
            let contributions = explainer.shap_values(&matrix(&rows)).expect("explains");
            let n_trees = trees.len() as f64;
            let base = trees.iter().map(expected_value).sum::<f64>() / n_trees;
            prop_assert!((contributions.base_value() - base).abs() <= 1e-12 * base.abs().max(1.0));
            for (index, row) in rows.iter().enumerate() {
                let mut mean = vec![0.0; n_features];
                for tree in &trees {
                    for (m, value) in mean.iter_mut().zip(shap(tree, row)) {
                        *m += value / n_trees;
                    }
                }
                let actual = contributions.row(index).expect("row");
                for (a, e) in actual.iter().zip(&mean) {
                    prop_assert!((a - e).abs() <= 1e-12 * e.abs().max(1.0), "{actual:?} != {mean:?}");
                }
                let prediction = trees.iter().map(|t| t.predict_row(row)).sum::<f64>() / n_trees;
                let total = contributions.prediction(index).expect("row");
                prop_assert!((total - prediction).abs() <= 1e-9 * prediction.abs().max(1.0));
            }
        }

        #[test]
        fn deep_trees_match_brute_force(seed in any::<u64>(), n_features in 1..=9_usize) {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let tree = random_tree(&mut rng, 12, n_features);
            let row = random_row(&mut rng, n_features);
            let phi = shap(&tree, &row);
            let expected = brute_force_shapley(&tree, &row);
            for (a, e) in phi.iter().zip(&expected) {
                prop_assert!((a - e).abs() <= 1e-9 * e.abs().max(1.0), "{phi:?} != {expected:?}");
            }
        }

        #[test]
        fn deep_wide_trees_match_the_papers_algorithm(seed in any::<u64>(), n_features in 1..=40_usize) {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let tree = random_tree(&mut rng, 22, n_features);
            let row = random_row(&mut rng, n_features);
            let phi = shap(&tree, &row);
            let expected = reference_shap(&tree, &row);
            for (a, e) in phi.iter().zip(&expected) {
                prop_assert!((a - e).abs() <= 1e-9 * e.abs().max(1.0), "{phi:?} != {expected:?}");
            }
            let total = expected_value(&tree) + phi.iter().sum::<f64>();
            let prediction = tree.predict_row(&row);
            prop_assert!((total - prediction).abs() <= 1e-9 * prediction.abs().max(1.0));
        }
    }
}
