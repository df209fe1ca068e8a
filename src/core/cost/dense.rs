//! A dense cost matrix of any strides, borrowed from the caller.

use ndarray::{Array2, ArrayView2, Axis};
use rayon::prelude::*;

use super::{add_into, rows_per_task, CostKernel, PlanSums};
use crate::core::error::{all_finite, OtError, Result};
use crate::core::layout::row_major_mut;
use crate::core::logsumexp::{
    accumulate_exp, finish_shifted, plan_row, plan_row_sums, plan_row_with_sums, softmin_exact,
    sum_exp,
};

/// Row `i` of `c` as a slice: borrowed when contiguous, gathered into `buf` otherwise.
#[inline]
fn row_of<'b>(c: &'b ArrayView2<'_, f64>, i: usize, buf: &'b mut Vec<f64>) -> &'b [f64] {
    let row = c.row(i);
    match row.to_slice() {
        Some(s) => s,
        None => {
            buf.clear();
            buf.extend(row.iter().copied());
            buf.as_slice()
        }
    }
}

/// A dense cost matrix of any strides, borrowed from the caller.
pub struct DenseCost<'a> {
    /// Stored so that rows are contiguous whenever either axis is: `transposed` says whether
    /// `view` is `Cᵀ` (an F-ordered input).
    view: ArrayView2<'a, f64>,
    transposed: bool,
}

impl<'a> DenseCost<'a> {
    pub fn new(cost: ArrayView2<'a, f64>) -> Result<Self> {
        if cost.is_empty() {
            return Err(OtError::shape(
                "M",
                format!(
                    "cost matrix must not be empty, got shape {:?}",
                    cost.shape()
                ),
            ));
        }
        let strides = cost.strides();
        let transposed = strides[1] != 1 && strides[0] == 1 && cost.ncols() > 1;
        let view = if transposed {
            cost.reversed_axes()
        } else {
            cost
        };
        let finite = view.axis_iter(Axis(0)).into_par_iter().all(|r| {
            r.as_slice()
                .map_or_else(|| r.iter().all(|v| v.is_finite()), all_finite)
        });
        if !finite {
            return Err(OtError::invalid("M", "contains NaN or Inf"));
        }
        Ok(DenseCost { view, transposed })
    }

    /// The borrowed matrix as given (for tests of the zero-copy boundary).
    pub fn as_ptr(&self) -> *const f64 {
        self.view.as_ptr()
    }

    /// `out_i = −ε log Σ_j exp((col_j − V_ij)/ε)` over the rows of the stored view.
    fn reduce_rows(&self, col: &[f64], shift: &[f64], eps: f64, out: &mut [f64]) {
        let v = &self.view;
        let inv_eps = 1.0 / eps;
        out.par_iter_mut()
            .enumerate()
            .with_min_len(rows_per_task(v.ncols()))
            .for_each_init(Vec::new, |buf, (i, o)| {
                let row = row_of(v, i, buf);
                let s = sum_exp(row, col, shift[i], inv_eps);
                *o = finish_shifted(s, shift[i], eps)
                    .unwrap_or_else(|| softmin_exact(row, col, eps));
            });
    }

    /// Row sums, column sums and `⟨C, P⟩` of the plan, along the stored view's rows; with
    /// `plan` (shaped as the view), the plan's entries are written there in the same pass.
    fn plan_pass(
        &self,
        row: &[f64],
        col: &[f64],
        eps: f64,
        plan: Option<&mut Array2<f64>>,
    ) -> PlanSums {
        // Work on the stored view V (= C or Cᵀ) and swap the roles back at the end.
        let (vrow, vcol) = if self.transposed {
            (col, row)
        } else {
            (row, col)
        };
        let v = &self.view;
        let (n, m) = v.dim();
        let inv_eps = 1.0 / eps;
        let mut sums_v_rows = vec![0.0; n];
        type Acc = (Vec<f64>, f64, Vec<f64>);
        let init = || (vec![0.0; m], 0.0, Vec::new());
        let visit =
            |(mut acc, t, mut buf): Acc, i: usize, rs: &mut f64, out: Option<&mut [f64]>| {
                let cost = row_of(v, i, &mut buf);
                let (mass, c) = match out {
                    Some(out) => plan_row_with_sums(cost, vcol, vrow[i], inv_eps, &mut acc, out),
                    None => plan_row_sums(cost, vcol, vrow[i], inv_eps, &mut acc),
                };
                *rs = mass;
                (acc, t + c, buf)
            };
        let rows = sums_v_rows
            .par_iter_mut()
            .enumerate()
            .with_min_len(rows_per_task(m));
        let parts: Vec<Acc> = match plan {
            Some(p) => rows
                .zip(p.axis_iter_mut(Axis(0)))
                .fold(init, |st, ((i, rs), prow)| {
                    visit(st, i, rs, Some(row_major_mut(prow)))
                })
                .collect(),
            None => rows
                .fold(init, |st, (i, rs)| visit(st, i, rs, None))
                .collect(),
        };
        let (sums_v_cols, transport) = parts
            .into_iter()
            .fold((vec![0.0; m], 0.0), |(a, t), (b, c, _)| {
                (add_into(a, b), t + c)
            });
        let (row_sums, col_sums) = if self.transposed {
            (sums_v_cols, sums_v_rows)
        } else {
            (sums_v_rows, sums_v_cols)
        };
        PlanSums {
            row_sums,
            col_sums,
            transport_cost: transport,
        }
    }

    /// `out_j = −ε log Σ_i exp((row_i − V_ij)/ε)`: accumulated row by row so the matrix is read
    /// along its contiguous axis; columns whose shifted sum is unusable are redone exactly.
    fn accumulate_cols(&self, row: &[f64], shift: &[f64], eps: f64, out: &mut [f64]) {
        let v = &self.view;
        let (n, m) = v.dim();
        let inv_eps = 1.0 / eps;
        let sums = (0..n)
            .into_par_iter()
            .with_min_len(rows_per_task(m))
            .fold(
                || (vec![0.0; m], Vec::new()),
                |(mut acc, mut buf), i| {
                    accumulate_exp(row_of(v, i, &mut buf), shift, row[i], inv_eps, &mut acc);
                    (acc, buf)
                },
            )
            .map(|(acc, _)| acc)
            .reduce(|| vec![0.0; m], add_into);
        out.par_iter_mut().enumerate().for_each(|(j, o)| {
            *o = finish_shifted(sums[j], shift[j], eps).unwrap_or_else(|| {
                let column: Vec<f64> = v.column(j).to_vec();
                softmin_exact(&column, row, eps)
            });
        });
    }
}

impl CostKernel for DenseCost<'_> {
    fn shape(&self) -> (usize, usize) {
        let (r, c) = self.view.dim();
        if self.transposed {
            (c, r)
        } else {
            (r, c)
        }
    }

    fn diameter(&self) -> f64 {
        let (lo, hi) = self
            .view
            .axis_iter(Axis(0))
            .into_par_iter()
            .map(|r| {
                r.iter()
                    .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &c| {
                        (lo.min(c), hi.max(c))
                    })
            })
            .reduce(
                || (f64::INFINITY, f64::NEG_INFINITY),
                |a, b| (a.0.min(b.0), a.1.max(b.1)),
            );
        hi - lo
    }

    fn softmin_rows(&self, col: &[f64], shift: &[f64], eps: f64, out: &mut [f64]) {
        if self.transposed {
            self.accumulate_cols(col, shift, eps, out)
        } else {
            self.reduce_rows(col, shift, eps, out)
        }
    }

    fn softmin_cols(&self, row: &[f64], shift: &[f64], eps: f64, out: &mut [f64]) {
        if self.transposed {
            self.reduce_rows(row, shift, eps, out)
        } else {
            self.accumulate_cols(row, shift, eps, out)
        }
    }

    fn plan_sums(&self, row: &[f64], col: &[f64], eps: f64) -> PlanSums {
        self.plan_pass(row, col, eps, None)
    }

    fn plan_with_sums(&self, row: &[f64], col: &[f64], eps: f64) -> (Array2<f64>, PlanSums) {
        let mut p = Array2::zeros(self.view.dim());
        let sums = self.plan_pass(row, col, eps, Some(&mut p));
        (
            if self.transposed {
                p.reversed_axes()
            } else {
                p
            },
            sums,
        )
    }

    fn cost_row(&self, i: usize, out: &mut [f64]) -> bool {
        let line = if self.transposed {
            self.view.column(i)
        } else {
            self.view.row(i)
        };
        match line.to_slice() {
            Some(s) => out.copy_from_slice(s),
            None => out.iter_mut().zip(line).for_each(|(o, c)| *o = *c),
        }
        true
    }

    fn plan(&self, row: &[f64], col: &[f64], eps: f64) -> Array2<f64> {
        // Computed along the stored view's contiguous rows; for a transposed view the result is
        // returned as the transpose of that (F-ordered), without a copy.
        let (vrow, vcol) = if self.transposed {
            (col, row)
        } else {
            (row, col)
        };
        let v = &self.view;
        let inv_eps = 1.0 / eps;
        let mut p = Array2::zeros(v.dim());
        p.axis_iter_mut(Axis(0))
            .into_par_iter()
            .zip(vrow)
            .enumerate()
            .for_each_init(Vec::new, |buf, (i, (prow, &r))| {
                plan_row(row_of(v, i, buf), vcol, r, inv_eps, row_major_mut(prow));
            });
        if self.transposed {
            p.reversed_axes()
        } else {
            p
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::s;

    fn naive_softmin_rows(c: &ArrayView2<f64>, col: &[f64], eps: f64) -> Vec<f64> {
        c.outer_iter()
            .map(|r| {
                let m = r
                    .iter()
                    .zip(col)
                    .map(|(c, w)| w - c)
                    .fold(f64::NEG_INFINITY, f64::max);
                -m - eps
                    * r.iter()
                        .zip(col)
                        .map(|(c, w)| ((w - c - m) / eps).exp())
                        .sum::<f64>()
                        .ln()
            })
            .collect()
    }

    #[test]
    fn dense_layouts_agree() {
        let c = Array2::from_shape_fn((7, 11), |(i, j)| ((i * 31 + j * 17) % 13) as f64 / 13.0);
        let col: Vec<f64> = (0..11).map(|j| 0.01 * j as f64).collect();
        let row: Vec<f64> = (0..7).map(|i| -0.02 * i as f64).collect();
        let eps = 0.05;
        let expected = naive_softmin_rows(&c.view(), &col, eps);
        let expected_cols = naive_softmin_rows(&c.t(), &row, eps);
        let f_order = c.t().as_standard_layout().into_owned();
        let big = Array2::from_shape_fn((14, 22), |(i, j)| c[(i / 2, j / 2)]);
        for view in [c.view(), f_order.t(), big.slice(s![..;2, ..;2])] {
            let k = DenseCost::new(view).unwrap();
            let mut out = vec![0.0; 7];
            // A deliberately poor shift exercises the fallback as well.
            k.softmin_rows(&col, &[1e6; 7], eps, &mut out);
            for (a, b) in out.iter().zip(&expected) {
                assert!((a - b).abs() < 1e-13, "{a} vs {b}");
            }
            let mut out = vec![0.0; 11];
            k.softmin_cols(&row, &[0.0; 11], eps, &mut out);
            for (a, b) in out.iter().zip(&expected_cols) {
                assert!((a - b).abs() < 1e-13, "{a} vs {b}");
            }
            let sums = k.plan_sums(&row, &col, eps);
            let plan = k.plan(&row, &col, eps);
            assert!((plan.sum_axis(Axis(1)).to_vec().iter().zip(&sums.row_sums))
                .all(|(a, b)| (a - b).abs() < 1e-12));
            assert!((plan.sum_axis(Axis(0)).to_vec().iter().zip(&sums.col_sums))
                .all(|(a, b)| (a - b).abs() < 1e-12));
            assert!(((&plan * &c).sum() - sums.transport_cost).abs() < 1e-12);
            // The one-pass plan and statistics: the same plan, and the sums of its own entries.
            let (one_pass, its_sums) = k.plan_with_sums(&row, &col, eps);
            assert_eq!(one_pass, plan);
            assert_eq!(one_pass.sum_axis(Axis(1)).to_vec().len(), 7);
            for (s, t) in [
                (&its_sums.row_sums, &sums.row_sums),
                (&its_sums.col_sums, &sums.col_sums),
            ] {
                assert!(s.iter().zip(t).all(|(a, b)| (a - b).abs() < 1e-14));
            }
            assert!((its_sums.transport_cost - sums.transport_cost).abs() < 1e-14);
        }
    }
}
