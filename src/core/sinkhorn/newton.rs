//! Newton's method on the balanced entropic dual, for the small ε where Sinkhorn stalls
//! (Brauer, Clason, Lorenz & Wirth, "A Sinkhorn–Newton method for entropic optimal transport",
//! 2017, §3).
//!
//! Sinkhorn's linear rate is set by the spectral gap of the plan's bipartite graph, which
//! vanishes as ε → 0: a near-permutation plan is a nearly disconnected graph, and even
//! over-relaxed updates then need tens of thousands of steps (ε = 1e-5 on 400 points). Newton's
//! method solves the marginal equations `P1 = a`, `Pᵀ1 = b` directly. With `r = P1`, `c = Pᵀ1`,
//! the dual objective `D(f, g) = ⟨a, f⟩ + ⟨b, g⟩ − ε Σ P_ij` has the gradient `(a − r, b − c)`
//! and the Hessian `−J/ε`, `J = [[diag r, P], [Pᵀ, diag c]]`, so the Newton step `d` solves
//! `J d = ε (a − r, b − c)`. At small ε the plan is numerically sparse; the system is solved
//! through its Schur complement on the columns by a dense Cholesky factorisation (up to
//! [`DIRECT_MAX`] columns), or else by preconditioned conjugate gradients, on the entries of `P`
//! above a floor, while `r`, `c` and the marginal error always come from the exact plan
//! statistics. A step is kept only when it lowers the exact marginal error (backtracking);
//! otherwise the caller's Sinkhorn updates go on.

use rayon::prelude::*;

use super::Side;
use crate::core::cost::CostKernel;

/// Entries of the plan below this fraction of their row's or column's weight are left out of
/// the Newton system (not of the marginals, which are exact).
const ENTRY_FLOOR: f64 = 1e-30;
/// The sparse system is only worth solving when the plan keeps at most this many entries per
/// point on average; denser plans are left to Sinkhorn, which is fast there.
const MAX_ENTRIES_PER_POINT: usize = 64;
/// Largest n·m Newton serves: building its sparse system reads every cost entry once per step
/// (like one log-domain update), which is no longer cheap beyond the dense stored kernels' size.
const MAX_CELLS: usize = 1 << 26;
/// Halvings of the step before a direction is given up.
const BACKTRACKS: usize = 12;
/// Newton stops after this many consecutive steps that lowered the error by less than 10 %:
/// its direction is then too inexact to beat Sinkhorn (the plan's graph is too ill-conditioned
/// for the conjugate gradients within their budget).
const STALLS: usize = 8;

/// The entries of the plan above the floor, rows in compressed form.
struct SparsePlan {
    row_ptr: Vec<usize>,
    cols: Vec<u32>,
    vals: Vec<f64>,
}

impl SparsePlan {
    /// `None` when the kernel cannot give its cost rows or the plan is too dense to pay.
    fn build<K: CostKernel + ?Sized>(
        kernel: &K,
        row: &[f64],
        col: &[f64],
        eps: f64,
        (a, b): (&[f64], &[f64]),
    ) -> Option<Self> {
        let (n, m) = kernel.shape();
        if !kernel.cost_row(0, &mut vec![0.0; m]) {
            return None;
        }
        let rows: Vec<(Vec<u32>, Vec<f64>)> = (0..n)
            .into_par_iter()
            .map_init(
                || vec![0.0; m],
                |cost, i| {
                    kernel.cost_row(i, cost);
                    let mut kept = (Vec::new(), Vec::new());
                    for (j, &c) in cost.iter().enumerate() {
                        let p = ((row[i] + col[j] - c) / eps).exp();
                        if p >= ENTRY_FLOOR * a[i].min(b[j]) && p > 0.0 {
                            kept.0.push(j as u32);
                            kept.1.push(p);
                        }
                    }
                    kept
                },
            )
            .collect();
        let total: usize = rows.iter().map(|r| r.0.len()).sum();
        if total > MAX_ENTRIES_PER_POINT * (n + m) {
            return None;
        }
        let mut plan = SparsePlan {
            row_ptr: Vec::with_capacity(n + 1),
            cols: Vec::with_capacity(total),
            vals: Vec::with_capacity(total),
        };
        plan.row_ptr.push(0);
        for (cols, vals) in rows {
            plan.cols.extend(cols);
            plan.vals.extend(vals);
            plan.row_ptr.push(plan.cols.len());
        }
        Some(plan)
    }

    /// `(r∘x + P y, Pᵀ x + c∘y)`.
    fn apply(&self, (r, c): (&[f64], &[f64]), x: &[f64], y: &[f64]) -> (Vec<f64>, Vec<f64>) {
        let mut top: Vec<f64> = r.iter().zip(x).map(|(r, x)| r * x).collect();
        let mut bottom: Vec<f64> = c.iter().zip(y).map(|(c, y)| c * y).collect();
        for (i, t) in top.iter_mut().enumerate() {
            let (s, e) = (self.row_ptr[i], self.row_ptr[i + 1]);
            for (&j, &p) in self.cols[s..e].iter().zip(&self.vals[s..e]) {
                *t += p * y[j as usize];
                bottom[j as usize] += p * x[i];
            }
        }
        (top, bottom)
    }
}

/// Preconditioned conjugate gradients for `J d = rhs` (Jacobi preconditioner `diag(r, c)`;
/// entries with a zero diagonal, i.e. zero weights, stay 0). `J` is positive semi-definite with
/// the null vector `(1, −1)`, to which a balanced right-hand side is orthogonal.
fn conjugate_gradients(
    plan: &SparsePlan,
    diag: (&[f64], &[f64]),
    rhs: (Vec<f64>, Vec<f64>),
    max_iter: usize,
) -> (Vec<f64>, Vec<f64>) {
    let inv = |d: &[f64]| -> Vec<f64> {
        d.iter()
            .map(|&v| if v > 0.0 { 1.0 / v } else { 0.0 })
            .collect()
    };
    let (inv_r, inv_c) = (inv(diag.0), inv(diag.1));
    let dot = |a: &(Vec<f64>, Vec<f64>), b: &(Vec<f64>, Vec<f64>)| -> f64 {
        let d = |x: &[f64], y: &[f64]| x.iter().zip(y).map(|(p, q)| p * q).sum::<f64>();
        d(&a.0, &b.0) + d(&a.1, &b.1)
    };
    let precondition = |v: &(Vec<f64>, Vec<f64>)| -> (Vec<f64>, Vec<f64>) {
        let mul = |x: &[f64], w: &[f64]| x.iter().zip(w).map(|(x, w)| x * w).collect();
        (mul(&v.0, &inv_r), mul(&v.1, &inv_c))
    };
    let axpy = |v: &mut (Vec<f64>, Vec<f64>), s: f64, w: &(Vec<f64>, Vec<f64>)| {
        v.0.iter_mut().zip(&w.0).for_each(|(v, w)| *v += s * w);
        v.1.iter_mut().zip(&w.1).for_each(|(v, w)| *v += s * w);
    };
    let mut x = (vec![0.0; rhs.0.len()], vec![0.0; rhs.1.len()]);
    let mut residual = rhs;
    let mut z = precondition(&residual);
    let mut direction = z.clone();
    let mut rz = dot(&residual, &z);
    let stop = rz * 1e-20;
    for _ in 0..max_iter {
        if rz.is_nan() || rz <= stop {
            break;
        }
        let jd = plan.apply(diag, &direction.0, &direction.1);
        let curvature = dot(&direction, &jd);
        if curvature.is_nan() || curvature <= 0.0 {
            break;
        }
        let alpha = rz / curvature;
        axpy(&mut x, alpha, &direction);
        axpy(&mut residual, -alpha, &jd);
        z = precondition(&residual);
        let rz_next = dot(&residual, &z);
        let beta = rz_next / rz;
        rz = rz_next;
        direction
            .0
            .iter_mut()
            .zip(&z.0)
            .for_each(|(d, z)| *d = z + beta * *d);
        direction
            .1
            .iter_mut()
            .zip(&z.1)
            .for_each(|(d, z)| *d = z + beta * *d);
    }
    x
}

/// Largest number of columns for which the Newton system is solved directly (a dense m×m
/// Cholesky factorisation, m³/3 multiply-adds per step).
const DIRECT_MAX: usize = 1000;

/// The Newton direction from `J (x, y) = rhs` by eliminating the rows: with `D = diag r`, the
/// Schur complement `S = diag c − Pᵀ D⁻¹ P` gives `S y = rhs_b − Pᵀ D⁻¹ rhs_a` and then
/// `x = D⁻¹ (rhs_a − P y)`. `S` is positive semi-definite with the constant vector in its
/// (near) null space — a shift of `g` by κ and `f` by −κ leaves the plan unchanged — so a
/// diagonal shift far below its scale makes the factorisation definite without moving the
/// plan. Conjugate gradients stall on this system at small ε (its condition number grows like
/// the inverse of the plan's weakest links); the factorisation does not. `None` when there are
/// too many columns or the factorisation breaks down.
fn schur_direction(
    plan: &SparsePlan,
    (r, c): (&[f64], &[f64]),
    (rhs_a, rhs_b): &(Vec<f64>, Vec<f64>),
) -> Option<(Vec<f64>, Vec<f64>)> {
    let m = c.len();
    if m > DIRECT_MAX {
        return None;
    }
    let scale = c.iter().fold(0.0f64, |s, &v| s.max(v));
    let mut schur = vec![0.0; m * m];
    for (j, &cj) in c.iter().enumerate() {
        schur[j * m + j] = cj + 1e-13 * scale;
    }
    let mut y = rhs_b.clone();
    for (i, &ri) in r.iter().enumerate().filter(|(_, &ri)| ri > 0.0) {
        let (s, e) = (plan.row_ptr[i], plan.row_ptr[i + 1]);
        let (cols, vals) = (&plan.cols[s..e], &plan.vals[s..e]);
        for (&j, &pj) in cols.iter().zip(vals) {
            let w = pj / ri;
            y[j as usize] -= w * rhs_a[i];
            for (&k, &pk) in cols.iter().zip(vals).filter(|(&k, _)| k <= j) {
                schur[j as usize * m + k as usize] -= w * pk;
            }
        }
    }
    cholesky_solve(&mut schur, m, &mut y)?;
    let x = (0..r.len())
        .map(|i| {
            if r[i] <= 0.0 {
                return 0.0;
            }
            let (s, e) = (plan.row_ptr[i], plan.row_ptr[i + 1]);
            let py: f64 = plan.cols[s..e]
                .iter()
                .zip(&plan.vals[s..e])
                .map(|(&j, &p)| p * y[j as usize])
                .sum();
            (rhs_a[i] - py) / r[i]
        })
        .collect();
    Some((x, y))
}

/// Solves `A z = b` in place for a symmetric positive definite `A` given by its lower triangle
/// (row-major n×n; overwritten by its Cholesky factor). `None` on a non-positive pivot.
fn cholesky_solve(a: &mut [f64], n: usize, b: &mut [f64]) -> Option<()> {
    for j in 0..n {
        let (done, rest) = a.split_at_mut(j * n);
        let row_j = &mut rest[..n];
        for k in 0..j {
            let row_k = &done[k * n..k * n + k];
            let dot: f64 = row_j[..k].iter().zip(row_k).map(|(x, y)| x * y).sum();
            row_j[k] = (row_j[k] - dot) / done[k * n + k];
        }
        let pivot = row_j[j] - row_j[..j].iter().map(|x| x * x).sum::<f64>();
        if pivot.is_nan() || pivot <= 0.0 {
            return None;
        }
        row_j[j] = pivot.sqrt();
    }
    for i in 0..n {
        let dot: f64 = a[i * n..i * n + i]
            .iter()
            .zip(&b[..i])
            .map(|(x, y)| x * y)
            .sum();
        b[i] = (b[i] - dot) / a[i * n + i];
    }
    for i in (0..n).rev() {
        let dot: f64 = ((i + 1)..n).map(|k| a[k * n + i] * b[k]).sum();
        b[i] = (b[i] - dot) / a[i * n + i];
    }
    Some(())
}

/// The exact plan statistics Newton needs at one point: the terms (potentials with the
/// log-weights folded in), the marginals and their error, as [`super::finish`] reports it.
struct Point {
    row_term: Vec<f64>,
    col_term: Vec<f64>,
    r: Vec<f64>,
    c: Vec<f64>,
    error: f64,
}

impl Point {
    fn of<K: CostKernel + ?Sized>(kernel: &K, rows: &Side, cols: &Side, eps: f64) -> Self {
        let mut row_term = vec![0.0; rows.potential.len()];
        let mut col_term = vec![0.0; cols.potential.len()];
        rows.term(eps, &mut row_term);
        cols.term(eps, &mut col_term);
        let sums = kernel.plan_sums(&row_term, &col_term, eps);
        let error = rows.plan_error(&sums.row_sums) + cols.plan_error(&sums.col_sums);
        Point {
            row_term,
            col_term,
            r: sums.row_sums,
            c: sums.col_sums,
            error,
        }
    }
}

/// Damped Newton steps on a balanced problem until the exact marginal error is at most `tol`,
/// `max_steps` were taken, or a direction fails to lower the error. Returns the steps taken.
pub(super) fn newton_steps<K: CostKernel + ?Sized>(
    kernel: &K,
    rows: &mut Side,
    cols: &mut Side,
    eps: f64,
    tol: f64,
    max_steps: usize,
) -> usize {
    let (n, m) = kernel.shape();
    if n.saturating_mul(m) > MAX_CELLS || !kernel.cost_row(0, &mut vec![0.0; m]) {
        return 0;
    }
    let mut here = Point::of(kernel, rows, cols, eps);
    let mut stalls = 0;
    for step in 0..max_steps {
        if here.error.is_nan() || here.error <= tol || crate::core::interrupt::check().is_err() {
            return step;
        }
        let weights = (&rows.weights[..], &cols.weights[..]);
        let Some(plan) = SparsePlan::build(kernel, &here.row_term, &here.col_term, eps, weights)
        else {
            return step;
        };
        let gradient = |m: &[f64], w: &[f64]| -> Vec<f64> {
            m.iter().zip(w).map(|(m, w)| eps * (w - m)).collect()
        };
        let rhs = (
            gradient(&here.r, &rows.weights),
            gradient(&here.c, &cols.weights),
        );
        let diag = (&here.r[..], &here.c[..]);
        let (df, dg) = match schur_direction(&plan, diag, &rhs) {
            Some(d) => d,
            None => {
                // Conjugate gradients cost about `entries` per iteration: ~20 passes' worth.
                let budget = (20 * n * m / plan.vals.len().max(1)).clamp(100, 4 * (n + m));
                conjugate_gradients(&plan, diag, rhs, budget)
            }
        };
        let (f0, g0) = (rows.potential.clone(), cols.potential.clone());
        let before = here.error;
        let mut t = 1.0;
        let accepted = (0..BACKTRACKS).any(|_| {
            let shifted = |p: &[f64], d: &[f64]| p.iter().zip(d).map(|(p, d)| p + t * d).collect();
            rows.potential = shifted(&f0, &df);
            cols.potential = shifted(&g0, &dg);
            let trial = Point::of(kernel, rows, cols, eps);
            t *= 0.5;
            (trial.error < here.error).then(|| here = trial).is_some()
        });
        if !accepted {
            rows.potential = f0;
            cols.potential = g0;
            return step;
        }
        stalls = if here.error > 0.9 * before {
            stalls + 1
        } else {
            0
        };
        if stalls == STALLS {
            return step + 1;
        }
    }
    max_steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::testing::uniform;

    #[test]
    fn cholesky_solves_a_positive_definite_system() {
        let n = 7;
        let mut next = uniform(2);
        let b: Vec<f64> = (0..n * n).map(|_| next() - 0.5).collect();
        // A = BᵀB + I, kept whole so the residual can be checked after the factorisation.
        let a: Vec<f64> = (0..n * n)
            .map(|ij| {
                let (i, j) = (ij / n, ij % n);
                (0..n).map(|k| b[k * n + i] * b[k * n + j]).sum::<f64>() + f64::from(i == j)
            })
            .collect();
        let rhs: Vec<f64> = (0..n).map(|_| next()).collect();
        let (mut factor, mut z) = (a.clone(), rhs.clone());
        cholesky_solve(&mut factor, n, &mut z).unwrap();
        for i in 0..n {
            let az: f64 = (0..n).map(|j| a[i * n + j] * z[j]).sum();
            assert!((az - rhs[i]).abs() < 1e-12, "{az} {}", rhs[i]);
        }
        let mut singular = vec![1.0, 1.0, 1.0, 1.0];
        assert!(cholesky_solve(&mut singular, 2, &mut [1.0, 0.0]).is_none());
    }

    #[test]
    fn both_directions_solve_the_newton_system() {
        // A 5×4 plan with one empty row (a zero weight) and a balanced right-hand side.
        let mut next = uniform(9);
        let (n, m) = (5, 4);
        let mut plan = SparsePlan {
            row_ptr: vec![0],
            cols: Vec::new(),
            vals: Vec::new(),
        };
        for i in 0..n {
            for j in 0..m {
                if i != 2 && (i + j) % 3 != 0 {
                    plan.cols.push(j as u32);
                    plan.vals.push(0.01 + next());
                }
            }
            plan.row_ptr.push(plan.cols.len());
        }
        let (x0, y0) = (vec![0.0; n], vec![0.0; m]);
        let zero = vec![0.0; n];
        let (r, _) = plan.apply((&zero, &vec![0.0; m]), &x0, &vec![1.0; m]);
        let (_, c) = plan.apply((&zero, &vec![0.0; m]), &vec![1.0; n], &y0);
        let d_true: (Vec<f64>, Vec<f64>) = (
            (0..n).map(|_| next()).collect(),
            (0..m).map(|_| next()).collect(),
        );
        let rhs = plan.apply((&r, &c), &d_true.0, &d_true.1);
        let solves = |(x, y): (Vec<f64>, Vec<f64>)| {
            let back = plan.apply((&r, &c), &x, &y);
            let residual = back.0.iter().zip(&rhs.0).chain(back.1.iter().zip(&rhs.1));
            assert!(
                residual.clone().all(|(u, v)| (u - v).abs() < 1e-9),
                "{:?}",
                residual.collect::<Vec<_>>()
            );
            assert_eq!(x[2], 0.0);
        };
        solves(schur_direction(&plan, (&r, &c), &rhs).unwrap());
        // Conjugate gradients (the path beyond DIRECT_MAX columns) on the same, small and well
        // conditioned system: the same residual.
        solves(conjugate_gradients(
            &plan,
            (&r, &c),
            rhs.clone(),
            4 * (n + m),
        ));
    }
}
