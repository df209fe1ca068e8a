//! Ground costs that are a function of the Euclidean distance, `C_ij = h(‖x_i − y_j‖)`
//! (Barton & Tai, §3.1): the distance itself, its square (convex), and the concave
//! `log(1 + d)`, `atan(d)` and `d^p` with 0 < p < 1, between point clouds or pixel positions.
//!
//! A concave `h` never moves mass that two histograms share and prefers a few long jumps to
//! many short ones (Gangbo & McCann 1996), which is why it suits image retrieval.

use ndarray::{Array2, ArrayView2, Axis};
use rayon::prelude::*;

use crate::core::error::{check_finite, OtError, Result};

/// `h` of `C = h(d)`, `d` the Euclidean distance.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum GroundCost {
    /// `d`.
    Distance,
    /// `d²`.
    SquaredDistance,
    /// `log(1 + d)`.
    Log1p,
    /// `atan(d)`.
    Atan,
    /// `d^p`, p > 0 (concave for p < 1).
    Power(f64),
}

/// The names [`GroundCost::from_name`] accepts.
pub const GROUND_COST_NAMES: [&str; 5] = ["distance", "sqdistance", "log1p", "atan", "power"];

impl GroundCost {
    /// Parses a cost name; `exponent` is required by (and only allowed with) `"power"`.
    pub fn from_name(name: &str, exponent: Option<f64>) -> Result<Self> {
        let cost = match name {
            "distance" => GroundCost::Distance,
            "sqdistance" => GroundCost::SquaredDistance,
            "log1p" => GroundCost::Log1p,
            "atan" => GroundCost::Atan,
            "power" => {
                let p = exponent.ok_or_else(|| {
                    OtError::invalid("exponent", "cost 'power' needs an exponent")
                })?;
                if !(p.is_finite() && p > 0.0) {
                    return Err(OtError::invalid(
                        "exponent",
                        format!("must be positive and finite, got {p}"),
                    ));
                }
                return Ok(GroundCost::Power(p));
            }
            other => {
                return Err(OtError::invalid(
                    "cost",
                    format!("must be one of {GROUND_COST_NAMES:?}, got {other:?}"),
                ))
            }
        };
        if exponent.is_some() {
            return Err(OtError::invalid(
                "exponent",
                format!("only the cost 'power' takes an exponent, not {name:?}"),
            ));
        }
        Ok(cost)
    }

    /// `h(d)` given the squared distance `d²` (so `d²` itself costs no square root).
    #[inline]
    pub fn of_squared_distance(self, sq: f64) -> f64 {
        match self {
            GroundCost::SquaredDistance => sq,
            GroundCost::Distance => sq.sqrt(),
            GroundCost::Log1p => sq.sqrt().ln_1p(),
            GroundCost::Atan => sq.sqrt().atan(),
            GroundCost::Power(p) => sq.powf(0.5 * p),
        }
    }

    /// Whether `h` is concave, so the cost favours few long moves (Barton & Tai, §3.1).
    pub fn is_concave(self) -> bool {
        match self {
            GroundCost::Distance | GroundCost::SquaredDistance => false,
            GroundCost::Log1p | GroundCost::Atan => true,
            GroundCost::Power(p) => p < 1.0,
        }
    }
}

/// `C_ij = h(‖x_i − y_j‖)` for point clouds x (n×d) and y (m×d).
pub fn pairwise_cost(
    x: ArrayView2<'_, f64>,
    y: ArrayView2<'_, f64>,
    cost: GroundCost,
) -> Result<Array2<f64>> {
    for (name, pts) in [("x", &x), ("y", &y)] {
        if pts.nrows() == 0 || pts.ncols() == 0 {
            return Err(OtError::shape(
                name,
                format!("point cloud must not be empty, got shape {:?}", pts.shape()),
            ));
        }
        check_finite(name, pts.iter())?;
    }
    if x.ncols() != y.ncols() {
        return Err(OtError::shape(
            "y",
            format!(
                "points must have the dimension of x ({}), got {}",
                x.ncols(),
                y.ncols()
            ),
        ));
    }
    let mut c = Array2::zeros((x.nrows(), y.nrows()));
    c.axis_iter_mut(Axis(0))
        .into_par_iter()
        .zip(x.axis_iter(Axis(0)))
        .for_each(|(mut row, xi)| {
            for (c, yj) in row.iter_mut().zip(y.outer_iter()) {
                let sq: f64 = xi.iter().zip(yj).map(|(a, b)| (a - b) * (a - b)).sum();
                *c = cost.of_squared_distance(sq);
            }
        });
    Ok(c)
}

/// Pixel centres of an `h × w` image in C order, `[row, column]` in pixel units.
pub fn grid_points(height: usize, width: usize) -> Result<Array2<f64>> {
    if height == 0 || width == 0 {
        return Err(OtError::shape(
            "image_shape",
            format!("must have positive sides, got ({height}, {width})"),
        ));
    }
    Ok(Array2::from_shape_fn((height * width, 2), |(k, axis)| {
        if axis == 0 {
            (k / width) as f64
        } else {
            (k % width) as f64
        }
    }))
}

/// `C_ij = h(‖[i] − [j]‖)` between the pixels of an `h × w` image (C order), pixel units.
pub fn grid_cost(height: usize, width: usize, cost: GroundCost) -> Result<Array2<f64>> {
    let pts = grid_points(height, width)?;
    pairwise_cost(pts.view(), pts.view(), cost)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn costs_of_a_3_4_5_triangle() {
        let x = array![[0.0, 0.0]];
        let y = array![[3.0, 4.0], [0.0, 0.0]];
        let expect = |cost, v: f64| {
            let c = pairwise_cost(x.view(), y.view(), cost).unwrap();
            assert!(
                (c[(0, 0)] - v).abs() < 1e-15,
                "{cost:?}: {} vs {v}",
                c[(0, 0)]
            );
            assert_eq!(c[(0, 1)], 0.0);
        };
        expect(GroundCost::Distance, 5.0);
        expect(GroundCost::SquaredDistance, 25.0);
        expect(GroundCost::Log1p, 6.0f64.ln());
        expect(GroundCost::Atan, 5.0f64.atan());
        expect(GroundCost::Power(0.5), 5.0f64.sqrt());
    }

    #[test]
    fn names_and_bad_input() {
        assert_eq!(
            GroundCost::from_name("power", Some(0.3)).unwrap(),
            GroundCost::Power(0.3)
        );
        assert!(GroundCost::from_name("power", None).is_err());
        assert!(GroundCost::from_name("power", Some(0.0)).is_err());
        assert!(GroundCost::from_name("atan", Some(0.5)).is_err());
        assert!(matches!(
            GroundCost::from_name("cosine", None),
            Err(OtError::InvalidArgument { name: "cost", .. })
        ));
        assert!(GroundCost::Atan.is_concave() && !GroundCost::Distance.is_concave());
        assert!(grid_cost(0, 3, GroundCost::Atan).is_err());
        let x = array![[0.0, f64::NAN]];
        assert!(pairwise_cost(x.view(), x.view(), GroundCost::Atan).is_err());
    }

    #[test]
    fn grid_is_c_ordered_pixel_units() {
        let c = grid_cost(2, 3, GroundCost::SquaredDistance).unwrap();
        // pixel 0 = (0, 0), pixel 5 = (1, 2).
        assert_eq!(c[(0, 5)], 5.0);
        assert_eq!(c[(1, 3)], 2.0);
        assert_eq!(c.shape(), &[6, 6]);
    }
}
