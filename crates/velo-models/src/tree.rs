//! Regression trees: the node layout shared by training, prediction, explanation and artifacts.

/// Marks a leaf in [`Node::feature`].
pub const LEAF: u32 = u32::MAX;

/// One node of a regression tree.
///
/// A split node sends a row left when `x[feature] <= threshold` (scikit-learn's rule) and
/// right otherwise, NaN included; a leaf has `feature == LEAF` and predicts `value`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Node {
    /// The feature tested, or [`LEAF`].
    pub feature: u32,
    /// The split threshold.
    pub threshold: f32,
    /// Index of the left child (unused in a leaf).
    pub left: u32,
    /// Index of the right child (unused in a leaf).
    pub right: u32,
    /// The mean target of the training rows reaching this node (a leaf's prediction).
    pub value: f64,
    /// The (bootstrap-weighted) number of training rows reaching this node: TreeSHAP's cover.
    pub cover: f64,
    /// The weighted impurity decrease of this split (0 for a leaf), for importances.
    pub gain: f64,
}

impl Node {
    /// A leaf predicting `value` for `cover` training rows.
    pub fn leaf(value: f64, cover: f64) -> Self {
        Self {
            feature: LEAF,
            threshold: 0.0,
            left: 0,
            right: 0,
            value,
            cover,
            gain: 0.0,
        }
    }

    /// True when the node is a leaf.
    pub fn is_leaf(&self) -> bool {
        self.feature == LEAF
    }
}

/// A regression tree: nodes with the root at index 0, children after their parent.
#[derive(Debug, Clone, PartialEq)]
pub struct Tree {
    nodes: Vec<Node>,
}

impl Tree {
    /// Builds a tree after checking its structure (see [`Tree::validate`]).
    ///
    /// # Errors
    /// A message describing the first inconsistency.
    pub fn new(nodes: Vec<Node>, n_features: usize) -> Result<Self, String> {
        let tree = Self { nodes };
        tree.validate(n_features)?;
        Ok(tree)
    }

    /// The nodes, root first.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Checks that every child index points forward inside the tree, every node but the root
    /// has exactly one parent, every feature index is below `n_features` and every value is
    /// finite: a tree that passes can be walked without out-of-bounds access or cycles.
    ///
    /// # Errors
    /// A message naming the offending node.
    pub fn validate(&self, n_features: usize) -> Result<(), String> {
        if self.nodes.is_empty() {
            return Err("a tree has no nodes".to_owned());
        }
        let len = self.nodes.len();
        let mut parents = vec![0_u32; len];
        for (index, node) in self.nodes.iter().enumerate() {
            if !node.value.is_finite() || !node.cover.is_finite() || node.cover < 0.0 {
                return Err(format!("node {index} has a non-finite value or cover"));
            }
            if node.is_leaf() {
                continue;
            }
            if node.feature as usize >= n_features {
                return Err(format!(
                    "node {index} tests feature {} of {n_features}",
                    node.feature
                ));
            }
            if !node.threshold.is_finite() {
                return Err(format!("node {index} has a non-finite threshold"));
            }
            for child in [node.left, node.right] {
                let child = child as usize;
                if child <= index || child >= len {
                    return Err(format!(
                        "node {index} has child {child} outside {}..{len}",
                        index + 1
                    ));
                }
                parents[child] += 1;
            }
        }
        if let Some(orphan) = (1..len).find(|&i| parents[i] != 1) {
            return Err(format!(
                "node {orphan} has {} parents, expected 1",
                parents[orphan]
            ));
        }
        Ok(())
    }

    /// The index of the leaf a row reaches (`row` holds every feature, in matrix order).
    pub fn leaf_index(&self, row: &[f32]) -> usize {
        let mut index = 0;
        loop {
            let node = &self.nodes[index];
            if node.is_leaf() {
                return index;
            }
            // NaN compares false and goes right.
            index = if row[node.feature as usize] <= node.threshold {
                node.left
            } else {
                node.right
            } as usize;
        }
    }

    /// The prediction for one row.
    pub fn predict_row(&self, row: &[f32]) -> f64 {
        self.nodes[self.leaf_index(row)].value
    }

    /// The depth of the tree (a lone leaf has depth 0).
    pub fn depth(&self) -> usize {
        let mut depths = vec![0_usize; self.nodes.len()];
        let mut deepest = 0;
        for (index, node) in self.nodes.iter().enumerate() {
            if !node.is_leaf() {
                for child in [node.left, node.right] {
                    depths[child as usize] = depths[index] + 1;
                    deepest = deepest.max(depths[index] + 1);
                }
            }
        }
        deepest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(feature: u32, threshold: f32, left: u32, right: u32) -> Node {
        Node {
            feature,
            threshold,
            left,
            right,
            value: 0.0,
            cover: 2.0,
            gain: 1.0,
        }
    }

    #[test]
    fn rows_follow_scikit_learns_rule() {
        let tree = Tree::new(
            vec![
                split(0, 0.5, 1, 2),
                Node::leaf(1.0, 1.0),
                Node::leaf(2.0, 1.0),
            ],
            1,
        )
        .expect("valid");
        assert_eq!(tree.predict_row(&[0.5]), 1.0);
        assert_eq!(tree.predict_row(&[0.6]), 2.0);
        assert_eq!(tree.predict_row(&[f32::NAN]), 2.0);
        assert_eq!(tree.depth(), 1);
    }

    #[test]
    fn malformed_trees_are_rejected() {
        let leaf = Node::leaf(1.0, 1.0);
        assert!(Tree::new(vec![], 1).is_err());
        assert!(
            Tree::new(vec![split(0, 0.5, 0, 2), leaf, leaf], 1).is_err(),
            "cycle"
        );
        assert!(
            Tree::new(vec![split(0, 0.5, 1, 3), leaf, leaf], 1).is_err(),
            "out of bounds"
        );
        assert!(
            Tree::new(vec![split(1, 0.5, 1, 2), leaf, leaf], 1).is_err(),
            "feature"
        );
        assert!(
            Tree::new(vec![split(0, 0.5, 1, 1), leaf, leaf], 1).is_err(),
            "shared child"
        );
        assert!(
            Tree::new(vec![split(0, f32::NAN, 1, 2), leaf, leaf], 1).is_err(),
            "threshold"
        );
        assert!(
            Tree::new(vec![Node::leaf(f64::INFINITY, 1.0)], 1).is_err(),
            "value"
        );
    }
}
