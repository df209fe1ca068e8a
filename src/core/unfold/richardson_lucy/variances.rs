//! pyunfold's propagated errors of iterative Bayesian unfolding (D'Agostini, NIM A 362 (1995)
//! 487, with Adye's corrections, arXiv:1105.1160) as per-cause variances, in O(m·L²·n_b) time
//! and O(L·n_b) memory per thread, for m iterations, L causes and n_b effect bins. The dense
//! propagation of the parent module keeps the derivative of the unfolded counts with respect to
//! every response entry, `dcdP` (L × n_b·L: 8 GB at 10³ bins, and an L³·n_b product per
//! iteration); here it is never formed.
//!
//! Step j maps the counts `p_j` to `u_j` with the unfolding matrix `M_j[b,t] = R_bt μ_j[t] /
//! f_j[b]`, where `μ_j = p_j/η`, `f_j = R p_j`. pyunfold's derivative after step j obeys
//! `X_j = B_j + T_j X_{j−1}` (`X_1 = B_1`), with, for the entry `R_bk`,
//!
//! * `B_j[t,(b,k)] = G_j[t,b] p_j[k] + δ_tk (μ_j[t] β_j[b] − γ_j[t])`,
//!   `G_j[t,b] = −β_j[b] M_j[b,t]`, `β_j = n/f_j`, `γ_j = u_j/η`;
//! * `T_j = diag(u_j/p_j) − M_jᵀ diag(n) M_j diag(η/p_j)`.
//!
//! Unrolled, `X_m = Σ_j P_j B_j` with `P_j = T_m ⋯ T_{j+1}`, so row t of `X_m`, read as an
//! (effects × causes) matrix, is a sum of 2m+1 outer products:
//!
//! `Z_t = Σ_j a_j[t,·] ⊗ p_j + Σ_j β_j ⊗ q_j[t,·] + 1 ⊗ q_0[t,·]`,
//! `a_j = P_j G_j`, `q_j = P_j diag(μ_j)`, `q_0 = −Σ_j P_j diag(γ_j)`.
//!
//! The columns of R are independent, so `Var(u_t) = Σ_k Z_t[·,k]ᵀ Cov(R_·k) Z_t[·,k]`, with
//! `Cov(R_·k) = (diag(R_·k) − R_·k R_·kᵀ)/N_k` (multinomial, `N_k = (η_k/δη_k)²` MC events) or
//! `diag(δR_·k²)` (Poisson). The rows of `P_j` are carried backwards (`P_{j−1} = P_j T_j`) in
//! blocks of rows, and `Z_t` is formed one row at a time.

use ndarray::linalg::general_mat_mul;
use ndarray::{concatenate, Array1, Array2, ArrayView1, ArrayView2, Axis};
use rayon::prelude::*;

use super::{check_len, safe_inverse};
use crate::core::error::{check_finite, OtError, Result};
use crate::core::interrupt;

/// Rows of `P_j` carried backwards together: large enough for efficient products, small enough
/// that the blocks spread over the threads.
const ROW_BLOCK: usize = 32;

/// The covariance of the response entries, as pyunfold's `cov_type`.
#[derive(Clone, Debug)]
pub enum ResponseErrors {
    /// Multinomial per cause with `N_k = (η_k/δη_k)²` MC events: the efficiency errors `δη`.
    Multinomial(Array1<f64>),
    /// Independent entries with errors `δR_bk`, (effects × causes).
    Poisson(Array2<f64>),
}

/// The covariance of one column of R in the form the variances use.
#[derive(Clone, Debug)]
enum ColumnCovariance {
    /// `1/N_k` per cause (0 for an infinite or zero MC sample, as pyunfold's safe inverse).
    Multinomial(Array1<f64>),
    /// `δR_bk²`.
    Poisson(Array2<f64>),
}

/// One unfolding step as the propagation needs it.
#[derive(Clone, Debug)]
struct Step {
    /// `μ = p/η`.
    mu: Array1<f64>,
    /// The counts before the step, `p`.
    prev: Array1<f64>,
    /// `β/f = n/f²`, per effect bin.
    beta_over_f: Array1<f64>,
    /// `β = n/f`, per effect bin.
    beta: Array1<f64>,
    /// `1/f`, per effect bin (0 where nothing is folded, as pyunfold's safe inverse).
    f_inv: Array1<f64>,
    /// `η/p`.
    eff_over_prev: Array1<f64>,
    /// `γ = u/η`.
    gamma: Array1<f64>,
    /// `u/p`.
    ratio: Array1<f64>,
    /// `μ·η/p`: 1 where both are non-zero, so that `M diag(η/p) = diag(1/f) R diag(μ·η/p)`.
    mu_eff_over_prev: Array1<f64>,
}

/// Accumulates pyunfold's error propagation step by step: the data (statistical) part forward,
/// through the derivative with respect to the data (effects × causes), and the response (MC,
/// systematic) part from the stored steps when asked.
#[derive(Clone, Debug)]
pub struct IbuErrorPropagator {
    response: Array2<f64>,
    data: Array1<f64>,
    data_var: Array1<f64>,
    eff: Array1<f64>,
    eff_inv: Array1<f64>,
    column_cov: ColumnCovariance,
    steps: Vec<Step>,
    /// `dcdn`, pyunfold's derivative of the unfolded counts with respect to the data.
    dcdn: Array2<f64>,
}

fn check_length(name: &'static str, len: usize, v: ArrayView1<'_, f64>) -> Result<()> {
    if v.len() != len {
        return Err(OtError::shape(
            name,
            format!("has {} entries, expected {len}", v.len()),
        ));
    }
    check_finite(name, v.iter())
}

/// `a·b` with the rows of `a` in blocks over the threads (the products of the data derivative
/// are the only large ones outside the parallel row blocks).
fn par_dot(a: ArrayView2<'_, f64>, b: ArrayView2<'_, f64>) -> Array2<f64> {
    let blocks: Vec<Array2<f64>> = a
        .axis_chunks_iter(Axis(0), ROW_BLOCK)
        .collect::<Vec<_>>()
        .into_par_iter()
        .map(|rows| rows.dot(&b))
        .collect();
    let views: Vec<_> = blocks.iter().map(|b| b.view()).collect();
    // Every block is a product with `b`, so they share its width and stack.
    match concatenate(Axis(0), &views) {
        Ok(stacked) => stacked,
        Err(_) => a.dot(&b),
    }
}

fn safe_ratio(a: &Array1<f64>, b: &Array1<f64>) -> Array1<f64> {
    a.iter().zip(b).map(|(x, y)| x * safe_inverse(*y)).collect()
}

impl IbuErrorPropagator {
    /// `response` is (effects × causes); `data`, `data_err` per effect bin; `efficiencies` per
    /// cause.
    pub fn new(
        response: Array2<f64>,
        data: Array1<f64>,
        data_err: Array1<f64>,
        efficiencies: Array1<f64>,
        errors: ResponseErrors,
    ) -> Result<Self> {
        let (nb, l) = response.dim();
        if nb == 0 || l == 0 {
            return Err(OtError::shape(
                "response",
                format!("must not be empty, got shape ({nb}, {l})"),
            ));
        }
        check_finite("response", response.iter())?;
        check_len("data", data.view(), nb, "effect bins")?;
        check_len("data_err", data_err.view(), nb, "effect bins")?;
        check_len("efficiencies", efficiencies.view(), l, "causes")?;
        let column_cov = match errors {
            ResponseErrors::Multinomial(eff_err) => {
                check_len("efficiencies_err", eff_err.view(), l, "causes")?;
                let n_mc = efficiencies
                    .iter()
                    .zip(&eff_err)
                    .map(|(e, d)| safe_inverse((e * safe_inverse(*d)).powi(2)))
                    .collect();
                ColumnCovariance::Multinomial(n_mc)
            }
            ResponseErrors::Poisson(err) => {
                if err.dim() != (nb, l) {
                    return Err(OtError::shape(
                        "response_err",
                        format!("has shape {:?}, expected ({nb}, {l})", err.dim()),
                    ));
                }
                check_finite("response_err", err.iter())?;
                ColumnCovariance::Poisson(err.mapv(|e| e * e))
            }
        };
        Ok(IbuErrorPropagator {
            eff_inv: efficiencies.mapv(safe_inverse),
            data_var: data_err.mapv(|e| e * e),
            eff: efficiencies,
            dcdn: Array2::zeros((nb, l)),
            response,
            data,
            column_cov,
            steps: Vec::new(),
        })
    }

    /// Number of recorded steps.
    pub fn n_steps(&self) -> usize {
        self.steps.len()
    }

    /// Records the step that took the counts `prev` to `new` (pyunfold's `n_c` before and after
    /// its `Mixer.smear`, before any regularisation of `new`).
    pub fn step(&mut self, prev: ArrayView1<'_, f64>, new: ArrayView1<'_, f64>) -> Result<()> {
        // Finite but of any sign: a regulariser (pyunfold's spline) may smooth below zero.
        let l = self.response.ncols();
        check_length("prev", l, prev)?;
        check_length("new", l, new)?;
        let (prev, new) = (prev.to_owned(), new.to_owned());
        let f_inv = self.response.dot(&prev).mapv(safe_inverse);
        let beta = &self.data * &f_inv;
        let mu = &prev * &self.eff_inv;
        let ratio = safe_ratio(&new, &prev);
        let eff_over_prev = safe_ratio(&self.eff, &prev);
        let step = Step {
            beta_over_f: &beta * &f_inv,
            mu_eff_over_prev: &mu * &eff_over_prev,
            eff_over_prev,
            f_inv,
            gamma: &new * &self.eff_inv,
            mu,
            beta,
            ratio,
            prev,
        };
        self.update_data_derivative(&step);
        self.steps.push(step);
        Ok(())
    }

    /// `M = diag(1/f) R diag(μ)`, the step's unfolding matrix (effects × causes).
    fn unfolding_matrix(&self, step: &Step) -> Array2<f64> {
        let mut m = &self.response * &step.mu;
        m *= &step.f_inv.view().insert_axis(Axis(1));
        m
    }

    /// pyunfold's `dcdn ← M + dcdn·diag(u/p) − M diag(η/p) Mᵀ diag(n) dcdn` (the first step:
    /// `dcdn = M`).
    fn update_data_derivative(&mut self, step: &Step) {
        let m = self.unfolding_matrix(step);
        if self.steps.is_empty() {
            self.dcdn = m;
            return;
        }
        let weighted = &self.dcdn * &self.data.view().insert_axis(Axis(1));
        let inner = par_dot(m.t(), weighted.view());
        let m_scaled = &m * &step.eff_over_prev;
        let mut next = &self.dcdn * &step.ratio;
        next -= &par_dot(m_scaled.view(), inner.view());
        next += &m;
        self.dcdn = next;
    }

    /// Variances of the unfolded counts from the data errors (pyunfold's `stat_err`²).
    pub fn stat_variance(&self) -> Array1<f64> {
        let sq = self.dcdn.mapv(|v| v * v);
        self.data_var.dot(&sq)
    }

    /// Variances of the unfolded counts from the response's errors (pyunfold's `sys_err`²).
    pub fn sys_variance(&self) -> Result<Array1<f64>> {
        let l = self.response.ncols();
        if self.steps.is_empty() {
            return Ok(Array1::zeros(l));
        }
        let flag = interrupt::current();
        let blocks: Vec<Vec<f64>> = (0..l)
            .step_by(ROW_BLOCK)
            .collect::<Vec<_>>()
            .into_par_iter()
            .map(|start| {
                let work = || self.block_sys_variance(start..(start + ROW_BLOCK).min(l));
                match &flag {
                    Some(f) => interrupt::with_flag(f, work),
                    None => work(),
                }
            })
            .collect::<Result<_>>()?;
        Ok(blocks.into_iter().flatten().collect())
    }

    /// The rows `rows` of `a_j` and `q_j` for every step and of `q_0`, carrying the rows of
    /// `P_j` backwards from `P_m = I`.
    fn block_terms(&self, rows: std::ops::Range<usize>) -> Result<BlockTerms> {
        let l = self.response.ncols();
        let mut p = Array2::zeros((rows.len(), l));
        for (i, t) in rows.enumerate() {
            p[(i, t)] = 1.0;
        }
        let m = self.steps.len();
        let mut a = Vec::with_capacity(m);
        let mut q = Vec::with_capacity(m);
        let mut q0 = Array2::zeros(p.dim());
        for (j, step) in self.steps.iter().enumerate().rev() {
            interrupt::check()?;
            let p_mu = &p * &step.mu;
            // a_j = P_j G_j = −(P_j diag(μ) Rᵀ) diag(β/f).
            let mut a_j = p_mu.dot(&self.response.t());
            a_j *= &step.beta_over_f.mapv(|v| -v);
            q0.scaled_add(-1.0, &(&p * &step.gamma));
            if j > 0 {
                // P_{j−1} = P_j T_j = P_j diag(u/p) + a_j R diag(μ·η/p).
                let mut next = &p * &step.ratio;
                next += &(a_j.dot(&self.response) * &step.mu_eff_over_prev);
                p = next;
            }
            a.push(a_j);
            q.push(p_mu);
        }
        a.reverse();
        q.reverse();
        Ok(BlockTerms { a, q, q0 })
    }

    fn block_sys_variance(&self, rows: std::ops::Range<usize>) -> Result<Vec<f64>> {
        let (nb, l) = self.response.dim();
        let m = self.steps.len();
        let terms = self.block_terms(rows.clone())?;
        // Z_t = U_t V_t with U_t = [a_1[t]..a_m[t] | β_1..β_m | 1] and V_t = [p_1..p_m ;
        // q_1[t]..q_m[t] ; q_0[t]]: only a_j[t] and q_j[t] change with t.
        let mut u = Array2::zeros((nb, 2 * m + 1));
        let mut v = Array2::zeros((2 * m + 1, l));
        for (j, step) in self.steps.iter().enumerate() {
            u.column_mut(m + j).assign(&step.beta);
            v.row_mut(j).assign(&step.prev);
        }
        u.column_mut(2 * m).fill(1.0);
        let mut z = Array2::zeros((nb, l));
        let mut out = Vec::with_capacity(rows.len());
        for i in 0..rows.len() {
            interrupt::check()?;
            for j in 0..m {
                u.column_mut(j).assign(&terms.a[j].row(i));
                v.row_mut(m + j).assign(&terms.q[j].row(i));
            }
            v.row_mut(2 * m).assign(&terms.q0.row(i));
            general_mat_mul(1.0, &u, &v, 0.0, &mut z);
            out.push(self.quadratic_form(&z));
        }
        Ok(out)
    }

    /// `Σ_k Z[·,k]ᵀ Cov(R_·k) Z[·,k]`.
    fn quadratic_form(&self, z: &Array2<f64>) -> f64 {
        match &self.column_cov {
            ColumnCovariance::Poisson(var) => z.iter().zip(var).map(|(a, s)| s * a * a).sum(),
            ColumnCovariance::Multinomial(inv_n) => {
                let l = z.ncols();
                let (mut sq, mut lin) = (vec![0.0; l], vec![0.0; l]);
                for (zr, rr) in z.rows().into_iter().zip(self.response.rows()) {
                    for k in 0..l {
                        let rz = rr[k] * zr[k];
                        sq[k] += rz * zr[k];
                        lin[k] += rz;
                    }
                }
                (0..l).map(|k| inv_n[k] * (sq[k] - lin[k] * lin[k])).sum()
            }
        }
    }
}

/// The rows of one block: `a_j` (rows × effects) and `q_j` (rows × causes) per step, `q_0`.
struct BlockTerms {
    a: Vec<Array2<f64>>,
    q: Vec<Array2<f64>>,
    q0: Array2<f64>,
}

#[cfg(test)]
mod tests {
    use super::super::{
        richardson_lucy, CovType, ErrorInputs, RichardsonLucyInput, RichardsonLucyParams,
    };
    use super::*;
    use ndarray::s;

    fn problem(nb: usize, l: usize) -> (Array2<f64>, Array1<f64>, Array1<f64>) {
        let mut r = Array2::from_shape_fn((nb, l), |(b, k)| {
            let d = b as f64 / nb as f64 - k as f64 / l as f64;
            (-(d * d) * 40.0).exp() + 0.01
        });
        let sums = r.sum_axis(Axis(0));
        for (mut c, s) in r.columns_mut().into_iter().zip(&sums) {
            c *= 0.8 / s;
        }
        let n = Array1::from_shape_fn(nb, |b| 100.0 + 50.0 * (b as f64).sin().abs());
        let ee = Array1::from_shape_fn(l, |k| 0.01 + 0.001 * k as f64);
        (r, n, ee)
    }

    /// The variances equal the diagonals of the dense propagation's covariances.
    #[test]
    fn matches_dense_propagation() {
        let (nb, l) = (9, 7);
        let (r, n, ee) = problem(nb, l);
        let re = r.mapv(|v| 0.1 * v.sqrt());
        let err = n.mapv(f64::sqrt);
        let eff = r.sum_axis(Axis(0));
        for cov_type in [CovType::Multinomial, CovType::Poisson] {
            let input = RichardsonLucyInput {
                response: r.view(),
                measured: n.view(),
                efficiencies: Some(eff.view()),
                prior: None,
                background: None,
                errors: Some(ErrorInputs {
                    data_err: err.view(),
                    response_err: Some(re.view()),
                    efficiencies_err: Some(ee.view()),
                    cov_type,
                }),
            };
            let params = RichardsonLucyParams {
                max_iter: 6,
                ts: None,
            };
            let dense = richardson_lucy(&input, &params).unwrap();
            let errors = match cov_type {
                CovType::Multinomial => ResponseErrors::Multinomial(ee.clone()),
                CovType::Poisson => ResponseErrors::Poisson(re.clone()),
            };
            let mut prop =
                IbuErrorPropagator::new(r.clone(), n.clone(), err.clone(), eff.clone(), errors)
                    .unwrap();
            let total = n.sum();
            let mut prev = Array1::from_elem(l, total / l as f64);
            for row in dense.history.rows() {
                let new = &row * dense.unfolded.sum();
                prop.step(prev.view(), new.view()).unwrap();
                prev = new;
            }
            let stat = prop.stat_variance();
            let sys = prop.sys_variance().unwrap();
            let dense_stat = dense.stat_cov.unwrap().diag().to_owned();
            let dense_sys = dense.sys_cov.unwrap().diag().to_owned();
            for (a, b) in stat
                .iter()
                .zip(&dense_stat)
                .chain(sys.iter().zip(&dense_sys))
            {
                assert!((a - b).abs() <= 1e-11 * b.abs().max(1e-12), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn rejects_bad_shapes() {
        let (r, n, ee) = problem(4, 3);
        let eff = r.sum_axis(Axis(0));
        let bad = IbuErrorPropagator::new(
            r.clone(),
            n.slice(s![..3]).to_owned(),
            n.clone(),
            eff.clone(),
            ResponseErrors::Multinomial(ee.clone()),
        );
        assert!(matches!(bad, Err(OtError::Shape { name: "data", .. })));
        let mut prop =
            IbuErrorPropagator::new(r, n.clone(), n, eff, ResponseErrors::Multinomial(ee)).unwrap();
        let short = Array1::ones(2);
        assert!(prop.step(short.view(), short.view()).is_err());
        assert_eq!(prop.n_steps(), 0);
    }
}
